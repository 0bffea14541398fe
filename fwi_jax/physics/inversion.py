"""Full-waveform inversion (FWI) with the acoustic solver: fit velocity models to observed shot
gathers by minimizing the waveform misfit, batched over models (and shots, over the devices).

Each frequency stage low-passes the source wavelet and the observed data with the same zero-phase
filter (the data are linear in the wavelet, so this equals filtering both gathers) and runs a
fresh optimizer: low frequencies first fit the long wavelengths and keep later stages from
cycle skipping. Velocities stay inside [vmin, vmax]: the objective sees the clipped model and
the iterate is clipped after every update.

The misfit of a model is relative (||d - d_obs||^2 / ||d_obs||^2 for l2, the same with |.| for
l1), so 1.0 is "no better than zero data" whatever the amplitudes; the objective is its sum over
the batch. Adam updates each model independently; L-BFGS treats the batch as one problem (one
line search), so use batches of similar models, or one model per call where that matters.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fwi_jax import metrics as metrics_lib
from fwi_jax.physics.acoustic import Mode
from fwi_jax.physics.geometry import Geometry
from fwi_jax.physics.solver import forward
from fwi_jax.physics.wavelets import ricker

OPTIMIZERS = ("lbfgs", "adam")
MISFITS = ("l2", "l1")

# Time steps per scan iteration for the fastest gradient, by mode (alternating A/Bs, 2026-12-06): fast
# mode's at 16 models is ~5% slower at unroll 2; exact mode's 0.90x at unroll 2 (1 and 4 models).
_GRADIENT_UNROLL = {"fast": 1, "exact": 2}


@dataclasses.dataclass(frozen=True)
class FWISettings:
    """How to invert: solver, misfit, optimizer, frequency stages and velocity bounds."""

    geometry: Geometry = Geometry()
    mode: Mode = "fast"
    misfit: str = "l2"
    optimizer: str = "lbfgs"
    iterations: int = 20  # per frequency stage
    frequencies: tuple[float, ...] = (5.0, 10.0, 0.0)  # low-pass cutoff per stage in Hz; 0 = full band
    vmin: float = 1500.0
    vmax: float = 4500.0
    lr: float = 20.0  # Adam: m/s per iteration
    first_step: float = 50.0  # L-BFGS: its first step changes no cell by more than this (m/s)
    linesearch_steps: int = 8  # L-BFGS: most misfit evaluations per line search

    def __post_init__(self) -> None:
        if self.mode not in _GRADIENT_UNROLL:
            raise ValueError(f"unknown mode {self.mode!r}; use one of {tuple(_GRADIENT_UNROLL)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use one of {OPTIMIZERS}")
        if self.misfit not in MISFITS:
            raise ValueError(f"unknown misfit {self.misfit!r}; use one of {MISFITS}")
        if self.iterations < 1 or not self.frequencies:
            raise ValueError("FWI needs >= 1 iteration and >= 1 frequency stage")
        nyquist = 0.5 / self.geometry.dt
        if any(not 0 <= f < nyquist for f in self.frequencies):
            raise ValueError(f"frequencies must lie in [0, {nyquist:g}) Hz (0 = full band), got {self.frequencies}")
        if not 0 < self.vmin < self.vmax:
            raise ValueError(f"velocity bounds need 0 < vmin < vmax, got {self.vmin}, {self.vmax}")
        self.geometry.check_cfl(self.vmax)


def lowpass(x: np.ndarray, cutoff_hz: float, dt: float, axis: int = -1, order: int = 6) -> np.ndarray:
    """Causal Butterworth low-pass of x along its time axis; 0 = no filter.

    Causal, so a filtered event never starts before the event: filtering the wavelet then equals
    filtering the data (a zero-phase filter's precursor would be cut from the wavelet at t = 0)."""
    from scipy import signal

    x = np.asarray(x, np.float32)
    if cutoff_hz <= 0:
        return x
    sos = signal.butter(order, cutoff_hz, fs=1.0 / dt, output="sos")
    return signal.sosfilt(sos, x, axis=axis).astype(np.float32)


def relative_misfit(syn: jax.Array, obs: jax.Array, kind: str = "l2") -> jax.Array:
    """Per-model misfit of (B, ...) gathers relative to the observed data's own size."""
    axes = tuple(range(1, obs.ndim))
    if kind == "l1":
        return jnp.sum(jnp.abs(syn - obs), axis=axes) / jnp.sum(jnp.abs(obs), axis=axes)
    return jnp.sum((syn - obs) ** 2, axis=axes) / jnp.sum(obs**2, axis=axes)


def _simulate(v, wavelet, s: FWISettings):
    v = jnp.clip(v, s.vmin, s.vmax)
    return forward(v, s.geometry, mode=s.mode, wavelet=wavelet, unroll=_GRADIENT_UNROLL[s.mode])


@functools.partial(jax.jit, static_argnames=("s",))
def _misfits(v, obs, wavelet, s: FWISettings):
    return relative_misfit(_simulate(v, wavelet, s), obs, s.misfit)


def _optimizer(s: FWISettings) -> optax.GradientTransformationExtraArgs:
    if s.optimizer == "adam":
        return optax.adam(s.lr)
    search = optax.scale_by_zoom_linesearch(s.linesearch_steps, initial_guess_strategy="one")
    return optax.lbfgs(memory_size=10, linesearch=search)


@functools.partial(jax.jit, static_argnames=("s",))
def _step(v, opt_state, obs, wavelet, scale, s: FWISettings):
    """One optimizer iteration; returns (v, opt_state, mean misfit at the incoming v)."""
    opt = _optimizer(s)

    def objective(p):
        return scale * jnp.sum(relative_misfit(_simulate(p, wavelet, s), obs, s.misfit))

    if s.optimizer == "adam":
        value, grad = jax.value_and_grad(objective)(v)
        updates, opt_state = opt.update(grad, opt_state, v)
        return jnp.clip(optax.apply_updates(v, updates), s.vmin, s.vmax), opt_state, value / (scale * v.shape[0])
    value, grad = optax.value_and_grad_from_state(objective)(v, state=opt_state)
    updates, new_state = opt.update(grad, opt_state, v, value=value, grad=grad, value_fn=objective)
    # A line search that ran out of steps can return a point with a higher misfit: keep the old
    # point then and restart L-BFGS's memory (its next step is a scaled gradient step).
    better = optax.tree_utils.tree_get(new_state, "value") < value
    new_v = jnp.clip(optax.apply_updates(v, updates), s.vmin, s.vmax)  # objective(clip(p)) = objective(p)
    opt_state = jax.tree.map(lambda a, b: jnp.where(better, a, b), new_state, opt.init(v))
    return jnp.where(better, new_v, v), opt_state, value / (scale * v.shape[0])


@functools.partial(jax.jit, static_argnames=("s",))
def _gradient_scale(v, obs, wavelet, s: FWISettings):
    """L-BFGS's first step is minus the gradient: scale the objective so that it moves <= first_step."""
    grad = jax.grad(lambda p: jnp.sum(relative_misfit(_simulate(p, wavelet, s), obs, s.misfit)))(v)
    return s.first_step / jnp.maximum(jnp.max(jnp.abs(grad)), 1e-30)


@jax.jit
def _velocity_metrics(v, truth, vmin, vmax):
    """Reference metrics of m/s maps, on maps normalized to [-1, 1] by (vmin, vmax)."""
    per = metrics_lib.per_sample((v - vmin) / (vmax - vmin) * 2 - 1, (truth - vmin) / (vmax - vmin) * 2 - 1)
    unit = (vmax - vmin) / 2
    return {"mae_ms": per["mae_norm"] * unit, "rmse_ms": jnp.sqrt(per["mse_norm"]) * unit, "ssim": per["ssim"]}


@dataclasses.dataclass
class Record:
    """One iteration: where it ran, the batch's mean misfit in its band, metrics when truth is known."""

    stage: int
    cutoff_hz: float
    iteration: int
    misfit: float
    seconds: float
    metrics: dict[str, list[float]] | None = None


def velocity_metrics(v: np.ndarray, truth: np.ndarray, s: FWISettings) -> dict[str, list[float]]:
    out = _velocity_metrics(jnp.asarray(v), jnp.asarray(truth, jnp.float32), s.vmin, s.vmax)
    return {k: np.asarray(x).tolist() for k, x in out.items()}


def full_band_misfit(v: np.ndarray, observed: np.ndarray, s: FWISettings) -> np.ndarray:
    """Per-model relative misfit against the unfiltered data."""
    wavelet = ricker(s.geometry.freq, s.geometry.dt, s.geometry.nt)
    return np.asarray(_misfits(jnp.asarray(v, jnp.float32), jnp.asarray(observed), jnp.asarray(wavelet), s))


def run_stage(
    v: np.ndarray,
    observed: np.ndarray,
    s: FWISettings,
    stage: int,
    truth: np.ndarray | None = None,
    on_iteration: Callable[[Record], None] | None = None,
) -> tuple[np.ndarray, list[Record]]:
    """`s.iterations` optimizer iterations of frequency stage `stage` from (B, nz, nx) m/s `v`."""
    g = s.geometry
    cutoff = float(s.frequencies[stage])
    wavelet = jnp.asarray(lowpass(ricker(g.freq, g.dt, g.nt), cutoff, g.dt))
    obs = jnp.asarray(lowpass(observed, cutoff, g.dt, axis=-2))  # (B, shots, time, receivers)
    x = jnp.clip(jnp.asarray(v, jnp.float32), s.vmin, s.vmax)
    scale = _gradient_scale(x, obs, wavelet, s) if s.optimizer == "lbfgs" else jnp.float32(1.0)
    opt_state = _optimizer(s).init(x)
    records = []
    for it in range(s.iterations):
        t0 = time.perf_counter()
        x, opt_state, value = _step(x, opt_state, obs, wavelet, scale, s)
        value = float(value)
        if not np.isfinite(value):
            raise FloatingPointError(f"the misfit became {value} in stage {stage + 1}, iteration {it + 1}")
        current = np.asarray(x)
        rec = Record(stage, cutoff, it, value, time.perf_counter() - t0)
        if truth is not None:
            rec.metrics = velocity_metrics(current, truth, s)
        records.append(rec)
        if on_iteration is not None:
            on_iteration(rec)
    return np.asarray(x), records
