"""TFDS builder `openfwi` (one config per dataset), array_record files, no TensorFlow needed.

    pip install -e ".[tfds]"
    python -m fwi_jax.data.prepare --dataset flatvel-a --root /data/flatvel-a      # split files
    python -m fwi_jax.data.tfds_openfwi --dataset flatvel-a --manual-dir /data/flatvel-a \
        --data-dir ~/tensorflow_datasets [--workers 4]

The build streams: each example is copied out of a memory-mapped .npy, one at a time. With
``--workers N > 1`` and Apache Beam installed (``pip install apache-beam``) it runs as a Beam
pipeline over N local processes, one task per file pair. Training reads the result with
``--config.data.source=tfds`` through `tfds.data_source` (random access, grain-ready).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from fwi_jax.cli import ArgumentParser
from fwi_jax.data.datasets import DATASETS, DatasetSpec, get_dataset
from fwi_jax.data.sources import open_npy, read_sample, read_split
from fwi_jax.data.tfds_source import VERSION, TFDSSource
from fwi_jax.fileio import check_output_dir

__all__ = ["Openfwi", "TFDSSource", "build", "main"]

# Raw bytes: float_list protos decode at ~20 MB/s without TensorFlow; bytes decode at memcpy speed.
_RAW = tfds.features.Encoding.BYTES
SPLITS = {"train": "train.txt", "validation": "val.txt"}
LICENSE = (
    "OpenFWI data are licensed CC BY-NC-SA 4.0 (Attribution-NonCommercial-ShareAlike 4.0 International) "
    "by their authors; this builder only converts files you downloaded yourself."
)
CITATION = """@inproceedings{deng2022openfwi,
  title={OpenFWI: Large-scale Multi-structural Benchmark Datasets for Full Waveform Inversion},
  author={Deng, Chengyuan and Feng, Shihang and Wang, Hanchen and Zhang, Xitong and Jin, Peng and Feng, Yinan
          and Zeng, Qili and Chen, Yinpeng and Lin, Youzuo},
  booktitle={NeurIPS Datasets and Benchmarks},
  year={2022}
}"""


def _examples_of_pair(item: tuple[int, str, str], spec: DatasetSpec):
    """(key, example) of every sample of one file pair, one sample in memory at a time.

    Integer keys (file position, sample) keep the split files' order in the built dataset.
    """
    position, seis_path, vel_path = item[0], Path(item[1]), Path(item[2])
    seis, vel = open_npy(seis_path, spec.seismic_shape), open_npy(vel_path, spec.velocity_shape)
    if len(seis) != len(vel):
        raise ValueError(f"{seis_path} holds {len(seis)} samples but {vel_path} holds {len(vel)}")
    for i in range(len(seis)):
        s, v = read_sample(seis, i), read_sample(vel, i)
        if not (np.isfinite(s).all() and np.isfinite(v).all()):
            raise ValueError(f"sample {i} of {seis_path.name} / {vel_path.name} holds NaN or inf")
        yield position * 1_000_000 + i, {"seismic": s, "velocity": v, "file": seis_path.name, "index": i}


class Openfwi(tfds.core.GeneratorBasedBuilder):
    """OpenFWI 2D datasets: seismic (5, 1000, 70) and velocity (1, 70, 70) float32 pairs, raw units."""

    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = {"1.0.0": "First release: raw (unnormalized) pairs, array_record."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name, description=f"OpenFWI {name}") for name in DATASETS]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download the dataset's .npy files from the OpenFWI website (https://openfwi-lanl.github.io), then run "
        "`python -m fwi_jax.data.prepare --dataset NAME --root DIR` and pass that DIR as manual_dir."
    )
    workers = 1

    def _info(self) -> tfds.core.DatasetInfo:
        spec = get_dataset(self.builder_config.name)
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"OpenFWI {spec.name}: seismic shot gathers and velocity maps (m/s). {LICENSE}",
            features=tfds.features.FeaturesDict(
                {
                    "seismic": tfds.features.Tensor(shape=spec.seismic_shape, dtype=np.float32, encoding=_RAW),
                    "velocity": tfds.features.Tensor(shape=spec.velocity_shape, dtype=np.float32, encoding=_RAW),
                    "file": tfds.features.Text(),
                    "index": np.int32,
                }
            ),
            homepage="https://openfwi-lanl.github.io",
            citation=CITATION,
            license=LICENSE,
            # Records keep the files' order (fwi_jax's pipeline shuffles): no shuffle pass, no temp copy.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        missing = [f for f in SPLITS.values() if not (root / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{root} has no {' / '.join(missing)}: run `python -m fwi_jax.data.prepare --dataset "
                f"{self.builder_config.name} --root {root}` first"
            )
        return {split: self._generate_examples(read_split(root / f, root)) for split, f in SPLITS.items()}

    def _generate_examples(self, pairs):
        spec = get_dataset(self.builder_config.name)
        items = [(k, str(s), str(v)) for k, (s, v) in enumerate(pairs)]
        if self.workers > 1:
            import apache_beam as beam

            return beam.Create(items) | beam.FlatMap(_examples_of_pair, spec=spec)
        return (ex for item in items for ex in _examples_of_pair(item, spec))


def build(dataset: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike, workers: int = 1) -> Path:
    """Build (or reuse) `openfwi/<dataset>` under ``data_dir``; returns the version folder."""
    spec = get_dataset(dataset)
    data_dir = str(Path(data_dir).expanduser().absolute())
    builder = Openfwi(config=spec.name, data_dir=data_dir, file_format="array_record")
    beam_options = None
    if workers > 1:
        try:
            from apache_beam.options.pipeline_options import PipelineOptions
        except ImportError:
            raise ImportError("--workers > 1 needs Apache Beam: pip install apache-beam (or use --workers 1)") from None
        builder.workers = workers
        beam_options = PipelineOptions(
            [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing", "--runner=DirectRunner"]
        )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(Path(manual_dir).expanduser().absolute()),
            beam_options=beam_options,
            try_download_gcs=False,  # no network: the data come only from manual_dir
        )
    )
    return Path(builder.data_dir)


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m fwi_jax.data.tfds_openfwi", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, help="OpenFWI dataset name (the builder config), e.g. flatvel-a")
    p.add_argument("--manual-dir", required=True, help="the downloaded files, with split files from prepare")
    p.add_argument("--data-dir", default="~/tensorflow_datasets", help="where the built dataset goes")
    p.add_argument("--workers", type=int, default=1, help="> 1: parallel build with Apache Beam's DirectRunner")
    a = p.parse_args(argv)
    try:
        check_output_dir(a.data_dir, "--data-dir", inputs=(a.manual_dir,))
        out = build(a.dataset, a.manual_dir, a.data_dir, a.workers)
    except (ValueError, FileNotFoundError, ImportError) as e:
        p.exit(2, f"error: {e}\n")
    size = sum(f.stat().st_size for f in out.iterdir())
    print(
        f"built openfwi/{a.dataset} in {out} ({size / 1e9:.2f} GB); train with --config.data.source=tfds "
        f"--config.data.tfds_data_dir={Path(a.data_dir).expanduser().absolute()}"
    )


if __name__ == "__main__":
    main()
