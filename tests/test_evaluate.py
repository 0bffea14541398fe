"""`python -m fwi_jax.evaluate`: the report recomputes training's validation and writes its files."""

import csv
import json
import os
import shutil
import socket

import numpy as np
import pytest

from fwi_jax import evaluate


def test_evaluate_matches_training_validation_and_writes_reports(trained_run, capsys):
    workdir, summary = trained_run
    evaluate.main(["--workdir", str(workdir), "--checkpoint", "latest"])
    out = capsys.readouterr().out
    assert "| MAE |" in out and "| SSIM (maps rescaled to [0, 1]) |" in out and ": inversionnet, latest" in out
    published = [line for line in out.splitlines() if line.startswith("published, ")]
    assert published[0] == (  # the model's own rows first, flagged as not comparable with generated data
        "published, OpenFWI benchmark page (inversionnet, l1 loss): mae_norm 0.0131, rmse_norm 0.0211, "
        "ssim 0.9895 (ours is on generated data: not comparable)"
    )
    assert any("(velocitygan, l2 loss): mae_norm 0.0605" in line for line in published)
    report_dir = workdir / "eval" / f"val-latest-step{summary['step']}"
    report = json.loads((report_dir / "metrics.json").read_text())
    for key in ("mae_norm", "mse_norm", "rmse_ms", "ssim"):  # the final state's validation, recomputed
        assert report["metrics"][key] == pytest.approx(summary["val"][key], rel=1e-4)
    rows = list(csv.DictReader(open(report_dir / "per_sample.csv")))
    assert len(rows) == report["metrics"]["samples"] == 8
    assert np.mean([float(r["mae_ms"]) for r in rows]) == pytest.approx(report["metrics"]["mae_ms"], rel=1e-4)
    assert rows[0]["origin"].startswith("sample 0 of data3.npy")
    for name in ("predictions.png", "profiles.png", "gathers.png", "curves.png"):
        assert (report_dir / name).stat().st_size > 5_000
    best = evaluate.evaluate(workdir, "best", progress=False)
    assert best["checkpoint"] == "best" and best["metrics"]["samples"] == 8
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 3 in .*checkpoints; steps there: 2, 4"):
        evaluate.evaluate(workdir, "3", progress=False)
    with pytest.raises(ValueError, match="'best', 'latest' or a step number"):
        evaluate.evaluate(workdir, "newest", progress=False)


def test_evaluate_reads_a_workdir_whose_run_holds_the_lock(trained_run, tmp_path):
    """Readers never take or touch the lock: evaluating while a run trains does not disturb it."""
    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    lock = workdir / "run.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": "now", "command": "x"}))
    before = lock.read_bytes()
    report = evaluate.evaluate(workdir, "latest", progress=False)
    assert report["metrics"]["samples"] == 8 and lock.read_bytes() == before
