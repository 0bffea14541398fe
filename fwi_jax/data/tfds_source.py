"""A built TFDS ``openfwi/<dataset>`` (see `tfds_openfwi`, the builder) as a random-access source.

Reading needs tensorflow-datasets (the ``[tfds]`` extra) and no TensorFlow; it is imported when a
source opens, so this module imports with the base install.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fwi_jax.data.datasets import DatasetSpec

VERSION = "1.0.0"  # of the builder's output (tfds_openfwi.Openfwi.VERSION)


class TFDSSource:
    """A built `openfwi/<dataset>` split as a random-access (seismic, velocity) source. Picklable."""

    def __init__(self, spec: DatasetSpec, split: str, data_dir: str | os.PathLike):
        self.spec, self.split, self.data_dir = spec, split, str(Path(data_dir).expanduser().absolute())
        self._open()

    def _open(self) -> None:
        try:
            import tensorflow_datasets as tfds  # the optional [tfds] extra: only this source needs it
        except ImportError as e:
            raise ValueError(f"data.source=tfds needs tensorflow-datasets ({e}): pip install -e '.[tfds]'") from None
        folder = Path(self.data_dir) / "openfwi" / self.spec.name / VERSION
        if not (folder / "dataset_info.json").is_file():
            raise FileNotFoundError(
                f"openfwi/{self.spec.name} is not built under {self.data_dir}: run `python -m "
                f"fwi_jax.data.tfds_openfwi --dataset {self.spec.name} --manual-dir DIR --data-dir {self.data_dir}`"
            )
        # Read from the built folder itself: no builder class, so nothing here imports the builder.
        self._ds = tfds.builder_from_directory(str(folder)).as_data_source(split=self.split)

    def __getstate__(self) -> dict:
        return {"spec": self.spec, "split": self.split, "data_dir": self.data_dir}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return len(self._ds)

    def _record(self, index: int) -> dict:
        try:
            return self._ds[int(index)]
        except IndexError:
            raise
        except Exception as e:  # a damaged array_record file: the reader's own errors name no file
            first = (str(e).splitlines() or [""])[0][:200]
            raise ValueError(
                f"record {index} of openfwi/{self.spec.name}:{self.split} under {self.data_dir} is unreadable "
                f"({type(e).__name__}: {first}); rebuild it with `python -m fwi_jax.data.tfds_openfwi --dataset "
                f"{self.spec.name} --manual-dir DIR --data-dir {self.data_dir}` into an empty --data-dir"
            ) from None

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        ex = self._record(index)
        return ex["seismic"], ex["velocity"]

    def describe(self, index: int) -> str:
        ex = self._record(index)
        file = ex["file"].decode() if isinstance(ex["file"], bytes) else ex["file"]
        return f"record {index} of openfwi/{self.spec.name}:{self.split} (sample {ex['index']} of {file})"
