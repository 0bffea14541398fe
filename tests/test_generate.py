"""Velocity families and the OpenFWI-format dataset generator."""

import json

import numpy as np
import pytest

from fwi_jax.data import generate as gen
from fwi_jax.data import velocity


@pytest.mark.parametrize("family", velocity.family_names())
def test_families_are_seeded_and_in_range(family):
    a = velocity.generate(family, 8, seed=1)
    b = velocity.generate(family, 8, seed=1)
    c = velocity.generate(family, 8, seed=2)
    assert a.shape == (8, 70, 70) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 1500 and a.max() <= 4500
    # A slice of the stream equals the same maps generated in one go.
    np.testing.assert_array_equal(velocity.generate(family, 3, seed=1, start=5), a[5:])


def test_family_structure():
    flat = velocity.generate("flatvel-a", 20, seed=0)
    assert all(np.all(m == m[:, :1]) for m in flat)  # flat layers: constant along x
    for m in flat:  # "-A": velocity increases with depth
        assert np.all(np.diff(m[:, 0]) >= 0)
    curve = velocity.generate("curvevel-a", 20, seed=0)
    assert sum(not np.all(m == m[:, :1]) for m in curve) >= 15
    fault = velocity.generate("flatfault-a", 20, seed=0)
    assert sum(not np.all(m == m[:, :1]) for m in fault) >= 15  # faults break lateral invariance
    nlayers_a = np.mean([len(np.unique(m)) for m in velocity.generate("curvevel-a", 50, seed=0)])
    nlayers_b = np.mean([len(np.unique(m)) for m in velocity.generate("curvevel-b", 50, seed=0)])
    assert nlayers_b > nlayers_a  # "B" more complex than "A"


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown velocity family 'flatvel-c'"):
        velocity.generate("flatvel-c", 1, seed=0)


def fake_simulate(v):
    """Cheap stand-in with the solver's output shape, for file-handling tests only."""
    return np.broadcast_to(v[:, None, :1, :] / 1000.0, (len(v), 5, 1000, 70)).astype(np.float32)


def test_generate_cli_writes_openfwi_layout(tmp_path, capsys):
    out = tmp_path / "ds"
    gen.main(
        [
            "--family",
            "flatvel-a",
            "--num",
            "3",
            "--file-size",
            "2",
            "--out",
            str(out),
            "--mode",
            "fast",
            "--seed",
            "7",
        ]
    )
    assert "wrote 3 samples" in capsys.readouterr().out
    d1 = np.load(out / "data" / "data1.npy", mmap_mode="r")
    m1 = np.load(out / "model" / "model1.npy", mmap_mode="r")
    d2 = np.load(out / "data" / "data2.npy", mmap_mode="r")
    assert d1.shape == (2, 5, 1000, 70) and d1.dtype == np.float32
    assert m1.shape == (2, 1, 70, 70) and m1.dtype == np.float32
    assert d2.shape == (1, 5, 1000, 70)
    np.testing.assert_array_equal(m1[:, 0], velocity.generate("flatvel-a", 2, seed=7))
    assert np.all(np.isfinite(d1)) and d1.max() > 30  # a real simulation, positive direct peak
    assert (out / "train.txt").read_text() == "data/data1.npy\tmodel/model1.npy\n"
    assert (out / "val.txt").read_text() == "data/data2.npy\tmodel/model2.npy\n"
    assert json.loads((out / "generation.json").read_text())["seed"] == 7
    assert not list(out.rglob(".*.tmp"))


def test_generation_resumes_and_never_leaves_truncated_files(tmp_path):
    spec = gen.GenerationSpec("curvevel-a", num=6, seed=3, file_size=2)
    calls = []

    def failing(v):
        calls.append(len(v))
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted while making file 2
        return fake_simulate(v)

    with pytest.raises(KeyboardInterrupt):
        gen.generate_dataset(spec, tmp_path, progress=False, simulate=failing)
    assert (tmp_path / "data" / "data1.npy").exists()
    assert not (tmp_path / "data" / "data2.npy").exists()
    # A truncated file (e.g. from another tool) is detected and rewritten.
    (tmp_path / "data" / "data3.npy").write_bytes(b"\x93NUMPY garbage")
    summary = gen.generate_dataset(spec, tmp_path, progress=False, simulate=fake_simulate)
    assert summary["skipped"] == 2 and summary["generated"] == 4
    fresh = tmp_path / "fresh"
    gen.generate_dataset(spec, fresh, progress=False, simulate=fake_simulate)
    for k in (1, 2, 3):  # resumed == uninterrupted, bit for bit
        for sub, name in (("data", "data"), ("model", "model")):
            np.testing.assert_array_equal(
                np.load(tmp_path / sub / f"{name}{k}.npy"), np.load(fresh / sub / f"{name}{k}.npy")
            )


def test_resume_with_other_settings_is_refused(tmp_path):
    gen.generate_dataset(
        gen.GenerationSpec("flatvel-b", 1, seed=0, file_size=1),
        tmp_path,
        progress=False,
        simulate=fake_simulate,
    )
    with pytest.raises(ValueError, match="seed: existing 0 vs requested 1"):
        gen.generate_dataset(
            gen.GenerationSpec("flatvel-b", 1, seed=1, file_size=1),
            tmp_path,
            progress=False,
            simulate=fake_simulate,
        )
    (tmp_path / "generation.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        gen.generate_dataset(
            gen.GenerationSpec("flatvel-b", 1, seed=0, file_size=1),
            tmp_path,
            progress=False,
            simulate=fake_simulate,
        )


def test_cli_bad_arguments_exit_with_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gen.main(["--family", "nope", "--num", "1", "--out", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gen.main(["--family", "flatvel-a", "--num", "0", "--out", str(tmp_path)])
    assert "must be >= 1" in capsys.readouterr().err
