"""`forward`: shot gathers for a batch of velocity models, scheduled over the local devices.

Scheduling only: the physics of a task lives in `fwi_jax.physics.acoustic`. Shots are
independent, so they are packed into tasks of `group` shots (model-major order), the tasks are
padded to a multiple of the device count and spread with ``shard_map``; with
``--xla_force_host_platform_device_count`` set to the core count every CPU core is a device.
`_MODES` is the one place that decides how each mode packs and runs its tasks.
"""

from __future__ import annotations

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from fwi_jax.physics import acoustic, cpml
from fwi_jax.physics.acoustic import Boundary, Mode
from fwi_jax.physics.cpml import FAST_LANES
from fwi_jax.physics.geometry import Geometry
from fwi_jax.physics.timeloop import Gradient
from fwi_jax.physics.wavelets import ricker


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def fast_group(total: int, ndev: int) -> int:
    """Shots per fast-mode task for `total` shots on `ndev` devices.

    FAST_LANES shots per task (shots-innermost fields) cost ~0.85x per shot of smaller tasks on
    this project's CPU, but pad the last task of each device; take them unless the padding eats
    the gain (e.g. 4 models = 20 shots on 2 devices: 2 tasks of 5 each, not 2 of 8).
    """
    per_device = ceil_div(total, ndev)
    small = ceil_div(per_device, ceil_div(per_device, FAST_LANES - 1))  # <= 7 shots, split evenly
    slots_small = ceil_div(total, small * ndev) * small
    slots_lanes = ceil_div(total, FAST_LANES * ndev) * FAST_LANES
    return FAST_LANES if 0.85 * slots_lanes <= slots_small else small


class _Model:
    """One batch of models on the padded grid, as the task functions read it."""

    def __init__(self, v: jax.Array, g: Geometry, n: int):
        vp = jnp.pad(v.astype(jnp.float32), ((0, 0), (n, n), (n, n)), mode="edge")
        self.a = (vp * (g.dt / g.dx)) ** 2  # (v dt / dx)^2
        self.src_cols, self.src_row = np.asarray(g.src_x) + n, g.src_z + n
        self.amps = vp[:, self.src_row, self.src_cols] ** 2 * g.dt**2  # (B, S): the source term v^2 dt^2
        self.rec_x, self.rec_z = np.asarray(g.rec_x) + n, g.rec_z + n
        self.vmin = lax.stop_gradient(jnp.min(v, axis=(1, 2)))  # min / max are kinks: no gradient through them
        self.vmax = lax.stop_gradient(jnp.max(v, axis=(1, 2)))

    def fields(self) -> dict:
        return {"a": self.a, "amps": self.amps, "vmin": self.vmin, "vmax": self.vmax}

    def with_fields(self, fields: dict) -> _Model:
        other = copy.copy(self)
        other.__dict__.update(fields)
        return other


def _exact_task(m: _Model, g: Geometry, wavelet, task_model, *, boundary, pml, pml_r, unroll, gradient):
    del pml, pml_r
    prof = jnp.asarray(acoustic.damping_profile(g))

    def one(models, shots, src):
        i = models[0]
        return acoustic.exact_shots(
            m.a[i], m.vmin[i] * g.dt, prof, m.amps[models, shots], src, wavelet,
            rec_z=m.rec_z, rec_x=m.rec_x, nt=g.nt, ring=boundary, unroll=unroll, gradient=gradient,
        )  # fmt: skip

    return one


def _fast_task(m: _Model, g: Geometry, wavelet, task_model, *, boundary, pml, pml_r, unroll, gradient):
    del boundary
    one_model = bool(np.all(task_model == task_model[:, :1]))  # e.g. tasks of 5 shots: read the model once

    def one(models, shots, src):
        sel = models[:1] if one_model else models
        return cpml.fast_shots(
            m.a[sel], m.vmax[sel], m.amps[models, shots], src, wavelet,
            rec_z=m.rec_z, rec_x=m.rec_x, nt=g.nt, unroll=unroll, pml=pml, dx=g.dx, dt=g.dt, freq=g.freq, r=pml_r,
            gradient=gradient,
        )  # fmt: skip

    return one


# mode -> (shots per task for (total shots, devices), task function builder)
_MODES = {
    # One shot per task: its wavefields (~1.2 MB) stay in a core's cache.
    "exact": (lambda total, ndev: 1, _exact_task),
    "fast": (fast_group, _fast_task),
}


@functools.partial(
    jax.jit,
    static_argnames=("geometry", "mode", "boundary", "pml", "pml_r", "ndev", "group", "unroll", "gradient"),
)
def _forward_impl(v, wavelet, *, geometry, mode, boundary, pml, pml_r, ndev, group, unroll, gradient):
    g = geometry
    bsz, s = v.shape[0], g.num_shots
    m = _Model(v, g, acoustic.pad_width(g, mode, pml))
    # Tasks of `group` shots in model-major order, padded to a multiple of the device count by
    # repeating the last shot (dropped afterwards).
    total = bsz * s
    ntask = ceil_div(total, group * ndev) * ndev
    flat = np.minimum(np.arange(ntask * group), total - 1).reshape(ntask, group)
    task_model, task_shot = flat // s, flat % s
    task_src = np.stack([np.full(flat.shape, m.src_row), m.src_cols[task_shot]], axis=-1)
    build = functools.partial(_MODES[mode][1], g=g, task_model=task_model, boundary=boundary, pml=pml, pml_r=pml_r)

    def run(tm, ts, tsrc, fields, wavelets):
        # The model's arrays enter as arguments, not closures: under an outer jit (e.g. a line search's
        # while loop) a closed-over array can carry a sharding of another mesh than shard_map's.
        one = build(m.with_fields(fields), wavelet=wavelets[0], unroll=unroll, gradient=gradient)
        return lax.map(lambda t: one(*t), (tm, ts, tsrc))

    tasks = tuple(jnp.asarray(t, jnp.int32) for t in (task_model, task_shot, task_src))
    # One copy of the wavelet per device, so each device's copy varies with its tasks as the
    # adjoint's rule needs; the copies' cotangents are summed outside shard_map.
    wavelets = jnp.broadcast_to(wavelet, (ndev, *wavelet.shape))
    if ndev > 1:
        mesh = Mesh(np.asarray(jax.local_devices()[:ndev]), ("tasks",))
        run = jax.shard_map(run, mesh=mesh, in_specs=(P("tasks"),) * 3 + (P(), P("tasks")), out_specs=P("tasks"))
    rec = run(*tasks, m.fields(), wavelets)  # (tasks, nt, group, R)
    rec = jnp.swapaxes(rec, 1, 2).reshape(ntask * group, g.nt, g.num_receivers)[:total]
    return rec.reshape(bsz, s, g.nt, g.num_receivers)


def _concrete(x) -> np.ndarray | None:
    """x as numpy when it holds concrete values, None under tracing (jit / grad)."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def forward(
    velocity: jax.Array | np.ndarray,
    geometry: Geometry | None = None,
    *,
    mode: Mode = "exact",
    boundary: Boundary = "periodic",
    pml: int = 20,
    pml_r: float = 1e-5,
    wavelet: jax.Array | np.ndarray | None = None,
    num_devices: int | None = None,
    unroll: int = 2,
    gradient: Gradient = "adjoint",
) -> jax.Array:
    """Simulate shot gathers for velocity models.

    Args:
      velocity: (B, nz, nx) or (nz, nx) velocities in m/s.
      geometry: grid, time axis and acquisition; OpenFWI's by default.
      mode: "exact" (OpenFWI's damped 120-cell scheme) or "fast" (thin CPML, ~7x less work).
      boundary: exact mode's outer edge: "periodic" (as the reference) or "zero" (faster on CPU,
        up to a few % different on fast models).
      pml, pml_r: fast mode's PML width in cells and its nominal reflection coefficient.
      wavelet: source time function of >= nt samples; a Ricker at ``geometry.freq`` by default.
      num_devices: local devices to spread shots over (default: all, when they divide the work).
      unroll: time steps per scan iteration (2 was the fastest forward on CPU in both modes; for
        gradients 1 in fast mode at batches of models, 2 in exact mode).
      gradient: how reverse mode (``jax.grad`` / ``jax.vjp``) differentiates the solver: "adjoint"
        (default), the hand-written discrete adjoint (the transposed time step run backward, the
        forward wavefield rebuilt from ~sqrt(nt) saved states; 2.5-3.6 forwards per gradient), or
        "autodiff", JAX's own transposes through a rematerialized scan (2.5-2.7x slower, but it also
        supports forward mode: ``jax.jvp``, ``jax.jacfwd``, Hessian-vector products).

    Returns:
      (B, shots, nt, receivers) float32 pressure, positive direct-arrival peak (OpenFWI sign);
      without a batch axis for 2-D input. Differentiable with respect to ``velocity``.
    """
    g = geometry if geometry is not None else Geometry()
    v, wavelet, squeeze = _checked_inputs(velocity, g, mode, boundary, pml, wavelet, gradient)
    total = v.shape[0] * g.num_shots
    ndev = _num_devices(total, num_devices)
    group = _MODES[mode][0](total, ndev)
    out = _forward_impl(
        v,
        wavelet,
        geometry=g,
        mode=mode,
        boundary=boundary,
        pml=pml,
        pml_r=pml_r,
        ndev=ndev,
        group=group,
        unroll=unroll,
        gradient=gradient,
    )
    return out[0] if squeeze else out


def _checked_inputs(velocity, g: Geometry, mode, boundary, pml, wavelet, gradient):
    """(velocity as (B, nz, nx), wavelet, whether the input had no batch axis), or a ValueError."""
    if mode not in _MODES:
        raise ValueError(f"unknown mode {mode!r}; use 'exact' or 'fast'")
    if gradient not in ("adjoint", "autodiff"):
        raise ValueError(f"unknown gradient {gradient!r}; use 'adjoint' or 'autodiff'")
    if boundary not in ("periodic", "zero"):
        raise ValueError(f"unknown boundary {boundary!r}; use 'periodic' or 'zero'")
    v = jnp.asarray(velocity)
    squeeze = v.ndim == 2
    if squeeze:
        v = v[None]
    if v.ndim != 3 or v.shape[1:] != (g.nz, g.nx):
        raise ValueError(
            f"velocity must have shape (B, {g.nz}, {g.nx}) or ({g.nz}, {g.nx}) for this geometry, "
            f"got {tuple(jnp.shape(velocity))}"
        )
    if mode == "fast" and pml < 2:
        raise ValueError(f"fast mode needs pml >= 2 cells, got {pml}")
    host = _concrete(v)
    if host is not None:
        if not np.all(np.isfinite(host)):
            raise ValueError("velocity contains NaN or inf values")
        if host.min() <= 0:
            raise ValueError(f"velocity must be positive (m/s), got a minimum of {host.min():g}")
        g.check_cfl(float(host.max()))
    if wavelet is None:
        wavelet = ricker(g.freq, g.dt, g.nt)
    wavelet = jnp.asarray(wavelet, jnp.float32)
    if wavelet.ndim != 1 or wavelet.shape[0] < g.nt:
        raise ValueError(f"wavelet must be 1-D with >= nt={g.nt} samples, got {wavelet.shape}")
    return v, wavelet, squeeze


def _num_devices(ntask: int, requested: int | None) -> int:
    avail = jax.local_device_count()
    if requested is not None:
        if not 1 <= requested <= avail:
            raise ValueError(f"num_devices={requested} but {avail} local devices exist")
        return requested
    return min(avail, ntask)
