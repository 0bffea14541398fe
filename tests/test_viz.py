"""`python -m fwi_jax.viz`: pictures of runs and data files."""

import numpy as np
import pytest

from fwi_jax import viz


def test_viz_commands_write_pictures(trained_run, tmp_path, capsys):
    workdir, _ = trained_run
    viz.main(["curves", "--workdir", str(workdir), "--out", str(tmp_path / "c.png")])
    seis = tmp_path / "s.npy"
    np.save(seis, np.random.default_rng(0).normal(size=(2, 5, 1000, 70)).astype(np.float32))
    viz.main(["gathers", "--input", str(seis), "--index", "1", "--out", str(tmp_path / "g.png")])
    vel = tmp_path / "v.npy"
    np.save(vel, np.full((3, 1, 70, 70), 3000.0, np.float32))
    viz.main(["velocity", "--input", str(vel), "--out", str(tmp_path / "v.png")])
    for name in ("c.png", "g.png", "v.png"):
        assert (tmp_path / name).stat().st_size > 5_000
    with pytest.raises(SystemExit):
        viz.main(["gathers", "--input", str(vel), "--index", "9", "--out", str(tmp_path / "x.png")])
    assert "index" in capsys.readouterr().err
