"""`python -m fwi_jax.viz`: pictures of runs and data files."""

import json

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


def test_a_torn_metrics_log_is_read_plotted_evaluated_and_appended_to(trained_run, tmp_path):
    """A crash can cut metrics.jsonl anywhere: readers skip the torn line with a warning naming it, a
    writer that resumes cuts it off first (kept in metrics.jsonl.torn), evaluate still draws the curves."""
    import shutil

    from fwi_jax import evaluate, fileio
    from fwi_jax.training.metric_writer import MetricWriter

    workdir, _ = trained_run
    whole = (workdir / "metrics.jsonl").read_bytes()
    lines = whole.splitlines(keepends=True)
    ends = np.cumsum([len(line) for line in lines])
    for cut in (len(lines[0]) // 2, ends[1], ends[-2] + 5, len(whole) - 1):
        log = tmp_path / f"cut{cut}" / "metrics.jsonl"
        log.parent.mkdir()
        log.write_bytes(whole[:cut])
        complete = int(np.sum(ends <= cut))
        torn = cut not in ends and cut != len(whole) - 1  # a line missing only its newline is whole
        complete += cut == len(whole) - 1
        if torn:
            with pytest.warns(UserWarning, match=f"line {complete + 1} is not valid JSON"):
                assert len(fileio.read_jsonl(log)) == complete
        else:
            assert len(fileio.read_jsonl(log)) == complete
        if complete:
            assert viz.save_training_curves(log.parent / "c.png", log).stat().st_size > 5_000
        writer = MetricWriter(log.parent, tensorboard=False)
        writer.write(99, "train", {"loss": 1.0})
        writer.close()
        rows = [json.loads(line) for line in log.read_text().splitlines()]  # every line whole
        assert len(rows) == complete + 1 and rows[-1]["step"] == 99
        assert (log.parent / "metrics.jsonl.torn").exists() == torn
    run = tmp_path / "run"
    shutil.copytree(workdir, run)
    (run / "metrics.jsonl").write_bytes(whole[: ends[-2] + 5])
    with pytest.warns(UserWarning, match="not valid JSON"):
        evaluate.main(["--workdir", str(run), "--checkpoint", "latest"])
    assert list((run / "eval").glob("*/curves.png"))
