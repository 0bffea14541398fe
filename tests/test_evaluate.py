"""Metrics against hand values and a plain-numpy reference SSIM; evaluate / predict / viz / doctor CLIs."""

import csv
import json

import jax.numpy as jnp
import numpy as np
import pytest
from test_train import cache_dir, smoke_config  # noqa: F401 (session fixture: one generated dataset)

from fwi_jax import doctor, evaluate, metrics, predict, trainer, viz
from fwi_jax.data.datasets import get_dataset

SPEC = get_dataset("flatvel-a")


def numpy_reference_ssim(a, b, size=11, sigma=1.5):
    """OpenFWI's SSIM written out with loops: Gaussian window, zero 'same' padding, mean over the map."""
    x = np.arange(size) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    w = np.outer(g, g)
    half = size // 2

    def filt(img):
        padded = np.pad(img, half)
        out = np.zeros_like(img, dtype=np.float64)
        for i in range(img.shape[0]):
            for j in range(img.shape[1]):
                out[i, j] = np.sum(padded[i : i + size, j : j + size] * w)
        return out

    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = filt(a), filt(b)
    s_aa, s_bb, s_ab = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return np.mean(((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2)))


def test_ssim_matches_an_independent_numpy_implementation():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 1, size=(3, 70, 70)).astype(np.float32)
    p = np.clip(t + rng.normal(scale=0.1, size=t.shape), 0, 1).astype(np.float32)
    ours = np.asarray(metrics.ssim(jnp.asarray(p), jnp.asarray(t)))
    ref = [numpy_reference_ssim(p[i], t[i]) for i in range(3)]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert float(metrics.ssim(jnp.asarray(t), jnp.asarray(t))[0]) == pytest.approx(1.0, abs=1e-6)


def test_hand_computed_errors_in_both_spaces():
    target = np.zeros((2, 70, 70), np.float32)
    pred = target.copy()
    pred[0] += 0.1  # sample 0: every pixel off by 0.1 normalized = 150 m/s
    pred[1, :35] += 0.4  # sample 1: half the pixels off by 0.4
    per = {k: np.asarray(v) for k, v in metrics.per_sample(jnp.asarray(pred), jnp.asarray(target)).items()}
    np.testing.assert_allclose(per["mae_norm"], [0.1, 0.2], rtol=1e-6)
    np.testing.assert_allclose(per["mse_norm"], [0.01, 0.08], rtol=1e-5)
    s = metrics.summarize(per, 1500.0)
    assert s["mae_norm"] == pytest.approx(0.15) and s["mae_ms"] == pytest.approx(225.0)
    assert s["mse_norm"] == pytest.approx(0.045) and s["mse_ms"] == pytest.approx(0.045 * 1500**2)
    assert s["rmse_norm"] == pytest.approx(0.045**0.5) and s["rmse_ms"] == pytest.approx(1500 * 0.045**0.5)
    # Masked batch sums (the training loop's form) give the same numbers; padding rows do not count.
    padded_p = np.concatenate([pred, np.ones((1, 70, 70), np.float32)])[..., None]
    padded_t = np.concatenate([target, np.zeros((1, 70, 70), np.float32)])[..., None]
    sums = metrics.metric_sums(jnp.asarray(padded_p), jnp.asarray(padded_t), jnp.asarray([1.0, 1.0, 0.0]))
    fin = metrics.finalize(metrics.accumulate(None, sums), 1500.0)
    for k in ("mae_norm", "mse_norm", "rmse_ms", "ssim"):
        assert fin[k] == pytest.approx(s[k], rel=1e-5)


@pytest.fixture(scope="module")
def trained_run(cache_dir, tmp_path_factory):  # noqa: F811
    workdir = tmp_path_factory.mktemp("run")
    summary = trainer.train_and_evaluate(smoke_config(cache_dir), workdir)
    return workdir, summary


def test_evaluate_matches_training_validation_and_writes_reports(trained_run, capsys):
    workdir, summary = trained_run
    evaluate.main(["--workdir", str(workdir), "--checkpoint", "latest"])
    out = capsys.readouterr().out
    assert "| MAE |" in out and "| SSIM (maps rescaled to [0, 1]) |" in out and "not filled in" in out
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
    with pytest.raises(ValueError, match="'best', 'latest' or a step number"):
        evaluate.evaluate(workdir, "newest", progress=False)


def test_predict_streams_meters_per_second_and_matches_evaluate(trained_run, cache_dir, tmp_path):  # noqa: F811
    workdir, summary = trained_run
    _, val_src, _ = trainer.prepare_data(smoke_config(cache_dir))
    ((seis, vel_file),) = val_src.files  # the validation file, as a user would pass it
    truth = np.load(vel_file)
    out = tmp_path / "vel.npy"
    r = predict.predict(workdir, seis, out, checkpoint="latest", batch_size=3, progress=False)  # 8 = 3 + 3 + 2
    vel = np.load(out)
    assert vel.shape == (8, 1, 70, 70) and vel.dtype == np.float32 and r["samples"] == 8
    assert 1400 < vel.min() and vel.max() < 4600  # m/s
    mae_ms = float(np.mean(np.abs(vel - truth)))
    assert mae_ms == pytest.approx(summary["val"]["mae_ms"], rel=1e-3)
    single = tmp_path / "one.npy"
    np.save(single, np.load(seis)[2])  # one (5, 1000, 70) sample
    predict.predict(workdir, single, tmp_path / "one_vel.npy", checkpoint="latest", progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "one_vel.npy")[0], vel[2], atol=0.05)


def test_predict_bad_input_is_a_clear_error_and_never_touches_the_output(trained_run, tmp_path):
    workdir, _ = trained_run
    out = tmp_path / "vel.npy"
    np.save(out, np.full((1, 1, 70, 70), 7.0, np.float32))  # a previous result
    before = out.read_bytes()
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 5, 999, 70), np.float32))
    with pytest.raises(SystemExit):
        predict.main(["--workdir", str(workdir), "--input", str(wrong), "--out", str(out)])
    bad = tmp_path / "nan.npy"
    x = np.zeros((3, 5, 1000, 70), np.float32)
    x[2, 1, 5, 5] = np.nan
    np.save(bad, x)
    with pytest.raises(ValueError, match="sample 2 holds NaN or inf"):
        predict.predict(workdir, bad, out, progress=False)
    assert out.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        predict.predict(workdir, tmp_path / "missing.npy", out, progress=False)
    with pytest.raises(FileNotFoundError, match="holds no checkpoints"):
        predict.predict(tmp_path, bad, out, progress=False)


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


def test_doctor_verdicts(tmp_path, capsys):
    assert doctor.main(["--workdir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "backend: cpu with 8 device(s)" in out and "verdict: READY" in out
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert doctor.main(["--workdir", str(blocker / "run"), "--data-root", str(tmp_path / "none")]) == 1
    out = capsys.readouterr().out
    assert "FAIL  workdir" in out and "FAIL  data root" in out and "verdict: NOT READY" in out
