"""prepare CLI, both naming schemes, grain worker processes, the TFDS builder, prepare -> train end to end."""

import hashlib
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import smoke_config
from test_data import SPEC, write_pair

from fwi_jax.data import pipeline
from fwi_jax.data.datasets import get_dataset
from fwi_jax.data.prepare import main as prepare_main
from fwi_jax.data.prepare import prepare, split_counts
from fwi_jax.data.sources import OpenFWISource, read_split, scan_pairs
from fwi_jax.training.loop import train_and_evaluate


def write_fault_pair(root, suffix, n, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / f"seis{suffix}.npy", rng.normal(size=(n, 5, 1000, 70)).astype(np.float32))
    np.save(root / f"vel{suffix}.npy", rng.uniform(1500, 4500, size=(n, 1, 70, 70)).astype(np.float32))


def digest(root):
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.npy"))}


def test_scan_pairs_both_naming_schemes_in_natural_order(tmp_path):
    for k in (10, 2, 1):
        write_pair(tmp_path / "vel", k, 1)
    pairs, unpaired, scheme = scan_pairs(tmp_path / "vel")
    assert scheme == "vel" and not unpaired
    assert [p[0].name for p in pairs] == ["data1.npy", "data2.npy", "data10.npy"]
    for s in ("2_1_0", "10_1_0", "2_1_1"):
        write_fault_pair(tmp_path / "fault", s, 1)
    (tmp_path / "fault" / "vel4_1_0.npy").write_bytes(b"")  # a velocity file without its seismic
    pairs, unpaired, scheme = scan_pairs(tmp_path / "fault")
    assert scheme == "fault" and [p.name for p in unpaired] == ["vel4_1_0.npy"]
    assert [(s.name, v.name) for s, v in pairs] == [
        ("seis2_1_0.npy", "vel2_1_0.npy"),
        ("seis2_1_1.npy", "vel2_1_1.npy"),
        ("seis10_1_0.npy", "vel10_1_0.npy"),
    ]


def test_prepare_writes_relative_splits_and_reports_disk_use(tmp_path, capsys):
    for k, s in enumerate(("1_0", "1_1", "2_0", "2_1", "3_0")):
        write_fault_pair(tmp_path, s, 2, seed=k)
    before = digest(tmp_path)
    prepare_main(["--dataset", "flatfault-a", "--root", str(tmp_path), "--train-fraction", "0.8"])
    out = capsys.readouterr().out
    assert "train 4 files / 8 samples" in out and "val 1 files / 2 samples" in out and "GB" in out
    lines = (tmp_path / "train.txt").read_text().splitlines()
    assert lines[0] == "seis1_0.npy\tvel1_0.npy" and len(lines) == 4  # relative to the root
    assert (tmp_path / "val.txt").read_text() == "seis3_0.npy\tvel3_0.npy\n"
    assert digest(tmp_path) == before  # the user's files are only read
    src = OpenFWISource(read_split(tmp_path / "train.txt", tmp_path), SPEC)
    assert len(src) == 8
    # Re-running is fine (our own split files); a foreign split file is never overwritten.
    prepare("flatfault-a", tmp_path, train_fraction=0.8, progress=False)
    other = tmp_path / "other"
    write_pair(other, 1, 1)
    write_pair(other, 2, 1)
    (other / "train.txt").write_text("/cluster/openfwi/data/data1.npy\t/cluster/openfwi/model/model1.npy\n")
    with pytest.raises(FileExistsError, match="was not written by fwi_jax; pass --out"):
        prepare("flatvel-a", other, train_fraction=0.5, progress=False)
    report = prepare("flatvel-a", other, out=tmp_path / "splits", train_fraction=0.5, progress=False)
    assert report["train_files"] == 1 and (tmp_path / "splits" / "train.txt").read_text().startswith("data/data1")


def test_prepare_uses_official_counts_or_asks_for_a_fraction():
    assert split_counts(60, SPEC, None) == (48, 12)
    official = r"found 5 file pairs, but flatvel-a has 60 \(48 train / 12 val\).*--train-fraction"
    with pytest.raises(ValueError, match=official):
        split_counts(5, SPEC, None)
    assert split_counts(5, SPEC, 0.8) == (4, 1)
    with pytest.raises(ValueError, match="must be in"):
        split_counts(5, SPEC, 1.5)


def test_prepare_names_every_bad_file_at_once(tmp_path, capsys):
    write_pair(tmp_path, 1, 2)
    write_pair(tmp_path, 2, 2, nan=True)
    write_pair(tmp_path, 3, 2)
    raw = (tmp_path / "data" / "data3.npy").read_bytes()
    (tmp_path / "data" / "data3.npy").write_bytes(raw[: len(raw) // 3])  # truncated download
    np.save(tmp_path / "model" / "model4.npy", np.zeros((2, 1, 70, 70), np.float32))  # no data4.npy
    with pytest.raises(SystemExit):
        prepare_main(["--dataset", "flatvel-a", "--root", str(tmp_path), "--train-fraction", "0.5"])
    err = capsys.readouterr().err
    assert "3 problem(s)" in err
    assert "data2.npy: sample 1 holds NaN or inf" in err
    assert "data3.npy is not a readable .npy file" in err
    assert "model4.npy: no matching partner file" in err
    assert not (tmp_path / "train.txt").exists()  # nothing written on failure
    with pytest.raises(FileNotFoundError, match="no OpenFWI file pairs"):
        prepare("flatvel-a", tmp_path / "model", progress=False)


def test_source_pickles_and_worker_processes_give_the_same_batches(tmp_path):
    (tmp_path / "s.txt").write_text("".join(write_pair(tmp_path, k, 5) for k in (1, 2)))
    src = OpenFWISource(read_split(tmp_path / "s.txt"), SPEC)
    clone = pickle.loads(pickle.dumps(src))
    assert len(pickle.dumps(src)) < 10_000  # paths, not the memory maps' contents
    np.testing.assert_array_equal(clone[7][0], src[7][0])
    threads = list(pipeline.train_batches(src, 4, seed=1, start_step=0, num_steps=5))
    it = pipeline.train_batches(src, 4, seed=1, start_step=0, num_steps=5, num_workers=2)
    workers = list(it)
    it.close()
    assert len(workers) == 5
    for a, b in zip(threads, workers, strict=True):
        np.testing.assert_array_equal(a["raw_seismic"], b["raw_seismic"])
        np.testing.assert_array_equal(a["raw_velocity"], b["raw_velocity"])


tfds_openfwi = pytest.importorskip("fwi_jax.data.tfds_openfwi", reason="tensorflow-datasets not installed")


@pytest.fixture(scope="module")
def fault_dataset(tmp_path_factory):
    """A FlatFault-style download (flat seis/vel files), prepared and built as TFDS."""
    root = tmp_path_factory.mktemp("flatfault")
    for k, s in enumerate(("1_0", "1_1", "2_0", "2_1")):
        write_fault_pair(root, s, 8, seed=k)
    prepare("flatfault-a", root, train_fraction=0.75, progress=False)
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds_openfwi.build("flatfault-a", root, data_dir)
    return root, data_dir


def test_tfds_builder_matches_the_files_without_tensorflow(fault_dataset):
    root, data_dir = fault_dataset
    spec = get_dataset("flatfault-a")
    npy = OpenFWISource(read_split(root / "train.txt", root), spec)
    tf_src = tfds_openfwi.TFDSSource(spec, "train", data_dir)
    assert len(tf_src) == len(npy) == 24
    for i in (0, 9, 23):  # same order as the split file
        for a, b in zip(tf_src[i], npy[i], strict=True):
            np.testing.assert_array_equal(a, b)
    assert tf_src.describe(9) == "record 9 of openfwi/flatfault-a:train (sample 1 of seis1_1.npy)"
    assert len(tfds_openfwi.TFDSSource(spec, "validation", data_dir)) == 8
    info = (next((data_dir / "openfwi" / "flatfault-a").iterdir()) / "dataset_info.json").read_text()
    assert "CC BY-NC-SA 4.0" in info and "array_record" in info
    assert "tensorflow" not in sys.modules
    clone = pickle.loads(pickle.dumps(tf_src))  # grain workers
    np.testing.assert_array_equal(clone[3][1], npy[3][1])
    with pytest.raises(FileNotFoundError, match="is not built under"):
        tfds_openfwi.TFDSSource(spec, "train", data_dir / "nowhere")


def test_a_damaged_tfds_record_file_is_named_with_the_fix(fault_dataset, tmp_path):
    _, data_dir = fault_dataset
    copy = tmp_path / "tfds"
    shutil.copytree(data_dir, copy)
    (records,) = copy.rglob("openfwi-train.array_record*")
    records.write_bytes(records.read_bytes()[: records.stat().st_size // 2])  # an interrupted copy
    src = tfds_openfwi.TFDSSource(get_dataset("flatfault-a"), "train", copy)
    damaged = rf"record 23 of openfwi/flatfault-a:train under {copy} is unreadable \(RuntimeError: .*\); rebuild it"
    with pytest.raises(ValueError, match=damaged):
        src[23]
    with pytest.raises(ValueError, match="is unreadable"):  # as training meets it: through the grain pipeline
        list(pipeline.eval_batches(src, 8, num_threads=2))


def test_tfds_build_without_split_files_says_to_run_prepare(tmp_path):
    write_pair(tmp_path, 1, 1)
    with pytest.raises(FileNotFoundError, match="run `python -m fwi_jax.data.prepare"):
        tfds_openfwi.build("flatvel-a", tmp_path, tmp_path / "tfds")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["openfwi", "tfds"])
def test_prepare_then_train_on_a_download_like_layout(fault_dataset, tmp_path, source):
    root, data_dir = fault_dataset
    c = smoke_config(tmp_path, **{"data.source": source, "data.dataset": "flatfault-a", "num_epochs": 1})
    c.data.root, c.data.tfds_data_dir = str(root), str(data_dir)
    c.num_plot_samples = 0
    summary = train_and_evaluate(c, tmp_path / "run")
    assert summary["step"] == 3 and summary["val"]["samples"] == 8  # 24 / batch 8; every val sample once
    assert np.isfinite(summary["val"]["mae_ms"])


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_reads_hand_memory_map_pages_back(tmp_path):
    """Resident memory must not grow with the data read (a 700 MB file, or a whole dataset)."""
    (tmp_path / "s.txt").write_text(write_pair(tmp_path, 1, 8))
    src = OpenFWISource(read_split(tmp_path / "s.txt"), SPEC)
    for i in range(len(src)):
        src[i]

    def resident_kb(name):
        lines = Path("/proc/self/smaps").read_text().splitlines()
        heads = [k for k, line in enumerate(lines) if line.endswith(name)]
        return sum(int(next(x for x in lines[k:] if x.startswith("Rss:")).split()[1]) for k in heads)

    assert resident_kb("data1.npy") == 0 and resident_kb("model1.npy") == 0
