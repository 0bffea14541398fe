"""Normalization, memory-mapped sources, split files and the grain pipeline, on small files."""

import os

import jax
import numpy as np
import pytest

from fwi_jax import parallel
from fwi_jax.data import pipeline
from fwi_jax.data.datasets import DATASETS, get_dataset
from fwi_jax.data.device import DeviceBatches
from fwi_jax.data.sources import DataFileChanged, OpenFWISource, read_split
from fwi_jax.data.transforms import (
    denormalize_velocity,
    log_transform,
    normalize_seismic,
    normalize_velocity,
    prepare_batch,
)

SPEC = get_dataset("flatvel-a")


def write_pair(root, k, n, seed=0, nan=False):
    rng = np.random.default_rng(seed + k)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "model").mkdir(parents=True, exist_ok=True)
    seis = rng.normal(size=(n, 5, 1000, 70)).astype(np.float32)
    if nan:
        seis[1, 0, 0, 0] = np.nan
    vel = rng.uniform(1500, 4500, size=(n, 1, 70, 70)).astype(np.float32)
    np.save(root / "data" / f"data{k}.npy", seis)
    np.save(root / "model" / f"model{k}.npy", vel)
    return f"data/data{k}.npy\tmodel/model{k}.npy\n"


def test_registry_and_pure_round_trip_transforms():
    assert len(DATASETS) == 10 and get_dataset("FlatVel_A") is SPEC
    with pytest.raises(ValueError, match="unknown OpenFWI dataset"):
        get_dataset("flatvel-c")
    v = np.array([1500.0, 3000.0, 4500.0], np.float32)
    before = v.copy()
    n = normalize_velocity(v, SPEC)
    np.testing.assert_allclose(n, [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(denormalize_velocity(n, SPEC), v, rtol=1e-6)
    np.testing.assert_array_equal(v, before)  # inputs are never modified
    x = np.array([SPEC.data_min, 0.0, SPEC.data_max], np.float32)
    lo, hi = np.log1p(26.95), np.log1p(52.77)  # sign(x) log1p(|x|) of FlatVel-A's data_min / data_max
    expected = [-1.0, 2 * (0.0 + lo) / (hi + lo) - 1, 1.0]
    np.testing.assert_allclose(normalize_seismic(x, SPEC), expected, rtol=1e-6)
    assert log_transform(np.float32(-3.0)) == pytest.approx(-np.log1p(3.0))


def test_source_reads_samples_and_split_paths(tmp_path):
    lines = [write_pair(tmp_path, k, 3) for k in (1, 2)]
    (tmp_path / "train.txt").write_text("".join(lines))
    src = OpenFWISource(read_split(tmp_path / "train.txt"), SPEC)
    assert len(src) == 6 and src.locate(4) == (1, 1)
    seis, vel = src[4]
    np.testing.assert_array_equal(seis, np.load(tmp_path / "data" / "data2.npy")[1])
    assert vel.shape == (1, 70, 70)
    # Legacy absolute cluster paths are found under the root by their last components.
    (tmp_path / "legacy.txt").write_text("/cluster/x/data/data1.npy\t/cluster/x/model/model1.npy\n")
    assert read_split(tmp_path / "legacy.txt", tmp_path)[0][0] == tmp_path / "data" / "data1.npy"


@pytest.mark.parametrize(
    "content, match",
    [
        ("data/data9.npy\tmodel/model9.npy\n", r"train.txt:1: data/data9.npy not found"),
        ("just-one-path\n", "expected 'SEISMIC<TAB>VELOCITY'"),
        ("\n", "lists no files"),
    ],
)
def test_bad_split_files_name_the_problem(tmp_path, content, match):
    (tmp_path / "train.txt").write_text(content)
    with pytest.raises((FileNotFoundError, ValueError), match=match):
        read_split(tmp_path / "train.txt")


def test_corrupt_truncated_and_mismatched_files_are_named(tmp_path):
    line = write_pair(tmp_path, 1, 2)
    (tmp_path / "s.txt").write_text(line)
    raw = (tmp_path / "data" / "data1.npy").read_bytes()
    (tmp_path / "data" / "data1.npy").write_bytes(raw[: len(raw) // 2])  # truncated download
    with pytest.raises(ValueError, match=r"data1.npy is not a readable .npy file"):
        OpenFWISource(read_split(tmp_path / "s.txt"), SPEC)
    np.save(tmp_path / "data" / "data1.npy", np.zeros((2, 5, 999, 70), np.float32))
    with pytest.raises(ValueError, match=r"data1.npy has shape \(2, 5, 999, 70\), expected \(N, 5, 1000, 70\)"):
        OpenFWISource(read_split(tmp_path / "s.txt"), SPEC)
    np.save(tmp_path / "data" / "data1.npy", np.zeros((3, 5, 1000, 70), np.float32))
    with pytest.raises(ValueError, match="holds 3 samples but .*model1.npy holds 2"):
        OpenFWISource(read_split(tmp_path / "s.txt"), SPEC)


def test_a_file_that_changes_under_a_reader_is_named_never_a_sigbus(tmp_path):
    """Truncated, rewritten in place, replaced or removed after opening: one error naming the file."""
    (tmp_path / "s.txt").write_text(write_pair(tmp_path, 1, 3))
    path = tmp_path / "data" / "data1.npy"
    raw = path.read_bytes()
    cases = {
        "truncated to 1000 bytes": lambda: os.truncate(path, 1000),
        "rewritten in place": lambda: (path.write_bytes(raw[::-1]), os.utime(path, ns=(1, 1))),
        "replaced by another file": lambda: (
            (tmp_path / "new.npy").write_bytes(raw),
            os.replace(tmp_path / "new.npy", path),
        ),
        "removed": lambda: path.unlink(),
    }
    for what, change in cases.items():
        path.write_bytes(raw)
        source = OpenFWISource(read_split(tmp_path / "s.txt"), SPEC)
        np.testing.assert_array_equal(source[2][0], np.load(path)[2])
        change()
        with pytest.raises(
            DataFileChanged, match=rf"data1.npy changed while the run read it \({what}; it had {len(raw)} bytes"
        ):
            source[1]


def test_nan_sample_is_named(tmp_path):
    (tmp_path / "s.txt").write_text(write_pair(tmp_path, 1, 4, nan=True))
    src = OpenFWISource(read_split(tmp_path / "s.txt"), SPEC)
    with pytest.raises(ValueError, match="sample 1 of data1.npy / model1.npy holds NaN or inf"):
        list(pipeline.eval_batches(src, 4, num_threads=1))
    mesh = parallel.make_mesh(jax.devices()[:2])  # device placement: flagged on the devices, named on the host
    with pytest.raises(ValueError, match="sample 1 of data1.npy / model1.npy holds NaN or inf"):
        DeviceBatches(src, 2, seed=0, mesh=mesh, progress=False)


def test_train_batches_are_deterministic_resumable_and_sharded(tmp_path):
    (tmp_path / "s.txt").write_text("".join(write_pair(tmp_path, k, 5) for k in (1, 2)))
    src = OpenFWISource(read_split(tmp_path / "s.txt"), SPEC)  # 10 samples, batch 4: 2 steps/epoch
    vel = "raw_velocity"
    full = [b[vel] for b in pipeline.train_batches(src, 4, seed=3, start_step=0, num_steps=6, num_threads=2)]
    resumed = [b[vel] for b in pipeline.train_batches(src, 4, seed=3, start_step=3, num_steps=6, num_threads=1)]
    assert len(full) == 6 and all(b.shape == (4, 1, 70, 70) and b.dtype == np.float32 for b in full)
    for a, b in zip(full[3:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(full[0], full[2])  # epochs reshuffle
    halves = [
        next(pipeline.train_batches(src, 4, seed=3, start_step=0, num_steps=1, process_index=p, process_count=2))
        for p in (0, 1)
    ]
    np.testing.assert_array_equal(np.concatenate([h[vel] for h in halves]), full[0])
    idx = pipeline.batch_indices(len(src), 4, seed=3, step=4)
    np.testing.assert_array_equal(full[4], np.stack([src[int(i)][1] for i in idx]))  # raw, as on disk


def test_on_device_normalization_equals_the_numpy_transform(tmp_path):
    (tmp_path / "s.txt").write_text(write_pair(tmp_path, 1, 3))
    src = OpenFWISource(read_split(tmp_path / "s.txt"), SPEC)
    raw = pipeline.read_raw(src, np.arange(3), threads=2)
    on_device, finite = jax.jit(prepare_batch, static_argnums=1)(raw, SPEC)
    host = pipeline.read_normalized(src, np.arange(3))
    assert bool(finite) and on_device["seismic"].dtype == np.float32
    np.testing.assert_allclose(on_device["seismic"], host["seismic"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(on_device["velocity"], host["velocity"], rtol=0, atol=1e-6)
    raw["raw_seismic"][2, 1, 5, 5] = np.inf
    assert not bool(jax.jit(prepare_batch, static_argnums=1)(raw, SPEC)[1])


def test_eval_batches_pad_and_mask_every_sample_once(tmp_path):
    (tmp_path / "s.txt").write_text(write_pair(tmp_path, 1, 5))
    src = OpenFWISource(read_split(tmp_path / "s.txt"), SPEC)
    batches = list(pipeline.eval_batches(src, 4, num_threads=1))
    masks = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(masks, [1, 1, 1, 1, 1, 0, 0, 0])
    assert np.all(batches[1]["velocity"][1:] == 0)
