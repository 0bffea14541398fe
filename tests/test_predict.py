"""`python -m fwi_jax.predict`: m/s maps that match evaluate, and bad input that never touches the output."""

import numpy as np
import pytest
from helpers import smoke_config

from fwi_jax import predict
from fwi_jax.data.open import open_sources


@pytest.mark.floors
def test_predict_streams_meters_per_second_and_matches_evaluate(trained_run, cache_dir, tmp_path):
    workdir, summary = trained_run
    _, val_src, _ = open_sources(smoke_config(cache_dir))
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
