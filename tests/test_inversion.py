"""Physics-guided inversion: FWI recovers what the data constrain, keeps its bounds, resumes; the
training objective's physics term has the gradient finite differences give; bad input is refused."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import smoke_config

from fwi_jax import invert
from fwi_jax.config import quickstart_config
from fwi_jax.data.datasets import DatasetSpec, get_dataset
from fwi_jax.data.transforms import normalize_seismic
from fwi_jax.physics import Geometry, forward, inversion, openfwi_geometry
from fwi_jax.training import physics_loss
from fwi_jax.training.objectives import Supervised, make_objective
from fwi_jax.training.steps import model_from_config

# A small transmission survey (sources on top, receivers at the bottom): the data constrain the
# anomaly's slowness, so a few iterations must find it.
SMALL = Geometry(nz=32, nx=32, nt=400, src_x=(1, 15, 30), rec_x=tuple(range(32)), rec_z=30, src_z=1)


def _anomaly():
    z, x = np.mgrid[:32, :32]
    start = (2000 + 30 * z).astype(np.float32)[None]
    true = start + 300 * np.exp(-((z - 16) ** 2 + (x - 16) ** 2) / (2 * 6.0**2)).astype(np.float32)
    return start, true


def test_fwi_recovers_a_smooth_anomaly_and_keeps_its_bounds():
    start, true = _anomaly()
    obs = np.asarray(forward(true, SMALL, mode="fast"))
    s = inversion.FWISettings(geometry=SMALL, iterations=12, frequencies=(0.0,), vmin=1800, vmax=3500)
    v, records = inversion.run_stage(start, obs, s, 0, truth=true)
    rms = lambda m: float(np.sqrt(np.mean((m - true) ** 2)))  # noqa: E731
    assert rms(v) < rms(start) / 1.6  # measured 99.7 -> 51.4 m/s
    assert float(inversion.full_band_misfit(v, obs, s)[0]) < records[0].misfit / 100  # measured ~5000x
    assert records[-1].metrics["mae_ms"][0] < records[0].metrics["mae_ms"][0]
    # Tight bounds and big Adam steps: every cell stays inside, some sit on a bound.
    tight = inversion.FWISettings(
        geometry=SMALL, optimizer="adam", lr=400.0, iterations=2, frequencies=(10.0,), vmin=2050, vmax=2300
    )
    v, _ = inversion.run_stage(start, obs, tight, 0)
    assert v.min() >= 2050 and v.max() <= 2300 and (v == 2300).any()


class _Toy(nn.Module):
    """seismic (B, T, R, S) -> (B, 32, 32, 1) maps in (-1, 1), with BatchNorm like InversionNet."""

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.BatchNorm(use_running_average=not train)(x.mean(axis=1))
        return 0.5 * jnp.tanh(nn.Dense(32 * 32)(x.reshape(len(x), -1))).reshape(-1, 32, 32, 1)


def test_physics_objective_gradient_matches_finite_differences():
    start, true = _anomaly()
    raw = np.asarray(forward(np.concatenate([start, true]), SMALL, mode="fast"))  # (2, 3, 400, 32)
    spec = DatasetSpec("small", float(raw.min()), float(raw.max()), 1, 1, "vel", shots=3, time_samples=400,
                       receivers=32, depth=32, width=32)  # fmt: skip
    physics_loss.check_geometry(spec, SMALL)
    model = _Toy()
    objective = Supervised(model, l1=0.0, l2=0.0, physics=1.0, spec=spec, geometry=SMALL)  # UPFWI-style
    seismic = jnp.asarray(normalize_seismic(np.transpose(raw, (0, 2, 3, 1)), spec), jnp.float32)
    batch = {"seismic": seismic, "velocity": jnp.zeros((2, 32, 32, 1))}
    variables = model.init(jax.random.key(0), seismic, train=False)
    params, stats = variables["params"], variables["batch_stats"]

    @jax.jit
    def loss(p):
        value, (metrics, _) = objective.loss(p, stats, {}, batch, jax.random.key(1))
        return value, metrics["physics"]

    (value, physics), grads = jax.value_and_grad(loss, has_aux=True)(params)
    assert float(physics) == pytest.approx(float(value)) and float(value) > 0
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(0)
    direction = jax.tree.unflatten(tree, [rng.normal(size=x.shape).astype(np.float32) for x in leaves])
    norm = np.sqrt(sum(float(jnp.sum(d**2)) for d in jax.tree.leaves(direction)))
    eps = 1e-2 / norm
    shifted = [jax.tree.map(lambda p, d, k=k: p + k * eps * d, params, direction) for k in (1, -1)]
    numeric = (float(loss(shifted[0])[0]) - float(loss(shifted[1])[0])) / (2 * eps)
    pairs = zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True)
    analytic = sum(float(jnp.sum(g * d)) for g, d in pairs)
    assert numeric == pytest.approx(analytic, rel=0.02)
    # The config path: OpenFWI data pass the geometry check, a negative weight is refused.
    config = quickstart_config("smoke")
    config.loss.physics = 0.5
    spec = get_dataset(config.data.dataset)
    assert make_objective(config, model_from_config(config, spec), spec).physics == 0.5
    config.loss.physics = -1.0
    with pytest.raises(ValueError, match="loss.physics must be >= 0"):
        make_objective(config, model_from_config(config, spec), spec)


def test_invert_writes_results_and_resumes_after_an_interruption(trained_run, cache_dir, tmp_path, monkeypatch):
    from fwi_jax.data.open import open_sources

    workdir, _ = trained_run
    _, val_src, _ = open_sources(smoke_config(cache_dir))
    ((seis_file, vel_file),) = val_src.files
    seis, truth = tmp_path / "seis.npy", tmp_path / "truth.npy"
    np.save(seis, np.load(seis_file)[:2])
    np.save(truth, np.load(vel_file)[:2])
    out = tmp_path / "fwi" / "vel.npy"
    settings = inversion.FWISettings(
        geometry=openfwi_geometry(), optimizer="adam", iterations=2, frequencies=(8.0, 0.0)
    )
    real_stage, calls = inversion.run_stage, []

    def interrupted(v, obs, s, stage, *args):
        calls.append(stage)
        if stage == 1:
            raise KeyboardInterrupt
        return real_stage(v, obs, s, stage, *args)

    monkeypatch.setattr(inversion, "run_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        invert.invert_file(seis, f"predict:{workdir}@latest", out, settings, truth, pictures=1, progress=False)
    assert not out.exists() and (tmp_path / "fwi" / "vel.npy.partial" / "batch0_stage0.npz").exists()
    monkeypatch.setattr(inversion, "run_stage", lambda *a: (calls.append(a[3]), real_stage(*a))[1])
    invert.invert_file(seis, f"predict:{workdir}@latest", out, settings, truth, pictures=1, progress=False)
    assert calls == [0, 1, 1]  # the rerun started at the unfinished stage
    vel = np.load(out)
    assert vel.shape == (2, 1, 70, 70) and vel.dtype == np.float32
    assert settings.vmin <= vel.min() and vel.max() <= settings.vmax
    report = json.loads(out.with_suffix(".json").read_text())
    assert len(report["batches"][0]["iterations"]) == 4 and report["misfit_end"] < report["misfit_start"]
    assert set(report["end_metrics"]) == {"mae_ms", "rmse_ms", "ssim"} and len(report["per_sample"]) == 2
    assert (tmp_path / "fwi" / "vel_pictures" / "sample00000.png").exists()
    assert not (tmp_path / "fwi" / "vel.npy.partial").exists()


def test_invert_bad_input_is_a_clear_error(tmp_path):
    settings = inversion.FWISettings(geometry=openfwi_geometry(), iterations=1, frequencies=(0.0,))
    out = tmp_path / "vel.npy"
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 5, 999, 70), np.float32))
    with pytest.raises(ValueError, match="expected \\(N, 5, 1000, 70\\)"):
        invert.invert_file(wrong, "constant:2000", out, settings, progress=False)
    good = tmp_path / "seis.npy"
    x = np.ones((2, 5, 1000, 70), np.float32)
    np.save(good, x)
    for init, message in (
        ("median:3", "expected predict:WORKDIR"),
        ("linear:1500", "expected predict:WORKDIR"),
        (f"file:{wrong}", "--init needs \\(2, 1, 70, 70\\)"),
        (f"predict:{tmp_path}", "holds no checkpoints"),
    ):
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            invert.invert_file(good, init, out, settings, progress=False)
    x[1, 0, 3, 3] = np.nan
    np.save(good, x)
    with pytest.raises(ValueError, match="sample 1 holds NaN or inf"):
        invert.invert_file(good, "constant:2000", out, settings, progress=False)
    assert not out.exists()
    with pytest.raises(ValueError, match="exceeds the 2-4 scheme's limit"):
        inversion.FWISettings(geometry=openfwi_geometry(), vmax=9000.0)
    with pytest.raises(ValueError, match="unknown mode 'exakt'; use one of"):
        inversion.FWISettings(mode="exakt")
    with pytest.raises(ValueError, match="--frequencies takes"):
        invert.parse_frequencies("5,ten")
    with pytest.raises(SystemExit):
        invert.main(["--input", str(good), "--init", "constant:2000", "--out", str(out), "--optimizer", "sgd"])
