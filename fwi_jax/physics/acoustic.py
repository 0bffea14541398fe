"""2D constant-density acoustic finite differences in JAX (leapfrog in time, 4th order in space).

Two boundary treatments share one time loop:

* ``mode="exact"`` reproduces the scheme that made the OpenFWI data: velocity edge-padded by
  ``nbc`` cells, a first-order damping term with a quadratic profile scaled by the model's minimum
  velocity (corners take the x profile), a stencil that wraps periodically at the padded edge,
  and the source added as ``p += v^2 dt^2 s(t)`` to the new time level.
* ``mode="fast"`` keeps the same interior update and source but absorbs with a thin convolutional
  PML (Pasalic & McGarry style, for the 2nd-order equation) behind a zero ring, so the grid is
  ~7x smaller.

Shots are independent tasks mapped one at a time (the wavefields of one shot stay in cache) and
spread over all local devices with ``shard_map``; ``--xla_force_host_platform_device_count`` set
to the core count makes every CPU core a device. The time loop is a two-level scan whose inner
level is ``jax.checkpoint``-ed, so reverse mode stores ~2 sqrt(nt) wavefields instead of nt.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from fwi_jax.physics.geometry import Geometry
from fwi_jax.physics.wavelets import ricker

Mode = Literal["exact", "fast"]
Boundary = Literal["periodic", "zero"]

# 4th-order second-derivative weights: centre, +-1, +-2 neighbours.
_C0, _C1, _C2 = -5.0 / 2.0, 4.0 / 3.0, -1.0 / 12.0
_LN_1E7 = math.log(1e7)


def damping_profile(geometry: Geometry) -> np.ndarray:
    """Unit damping profile (H, W) of exact mode: d = vmin * profile.

    d(x) = 3 vmin ln(1e7) / (2A) (x/A)^2 with A = (nbc - 1) dx and x the distance into the
    absorbing zone (0 at the cell next to the model); the left/right profile covers full columns
    (corners take the x profile), the top/bottom profile only the model's columns.
    """
    g = geometry
    nbc = g.nbc
    if nbc < 2:
        raise ValueError(f"exact mode needs nbc >= 2 absorbing cells, got {nbc}")
    a = (nbc - 1) * g.dx
    ramp = 3.0 * _LN_1E7 / (2.0 * a) * ((np.arange(nbc) * g.dx / a) ** 2)  # inner -> outer
    h, w = g.nz + 2 * nbc, g.nx + 2 * nbc
    prof = np.zeros((h, w), np.float64)
    prof[nbc : nbc + g.nz, :nbc] = ramp[::-1]
    prof[nbc : nbc + g.nz, nbc + g.nx :] = ramp
    prof[:nbc, :] = ramp[::-1, None]
    prof[nbc + g.nz :, :] = ramp[:, None]
    prof[:, :nbc] = ramp[::-1]  # corners: x profile
    prof[:, nbc + g.nx :] = ramp
    return prof.astype(np.float32)


def _segments(nt: int) -> tuple[int, int]:
    """Split nt steps into (outer, inner) with inner ~ sqrt(nt) and outer * inner >= nt."""
    root = math.sqrt(nt)
    divisors = [d for d in range(1, nt + 1) if nt % d == 0 and root / 2 <= d <= 2 * root]
    if divisors:  # no wasted steps
        inner = min(divisors, key=lambda d: abs(d - root))
        return nt // inner, inner
    inner = max(1, round(root))
    return -(-nt // inner), inner


def _time_loop(step, carry, wavelet: jax.Array, nt: int, unroll: int):
    """Run ``step(carry, w_t) -> (carry, record_t)`` over nt steps, rematerializing segments."""
    outer, inner = _segments(nt)
    w = jnp.pad(wavelet[:nt], (0, outer * inner - nt)).reshape(outer, inner)

    @jax.checkpoint
    def segment(c, w_seg):
        return lax.scan(step, c, w_seg, unroll=unroll)

    _, rec = lax.scan(segment, carry, w)
    return rec.reshape((outer * inner,) + rec.shape[2:])[:nt]


def _ring(f: jax.Array, mode: str = "constant") -> jax.Array:
    """Add a 2-cell ring around the last two axes."""
    return jnp.pad(f, ((0, 0),) * (f.ndim - 2) + ((2, 2), (2, 2)), mode=mode)


def _shifted(q: jax.Array, h: int, w: int, dz: int, dx: int) -> jax.Array:
    """The (h, w) interior of a ringed field moved by (dz, dx) cells."""
    return q[..., 2 + dz : 2 + dz + h, 2 + dx : 2 + dx + w]


def _shift_sum(q: jax.Array, h: int, w: int, r: int) -> jax.Array:
    """Sum of the four neighbours at distance r over the interior of a ringed field."""
    s = functools.partial(_shifted, q, h, w)
    return s(-r, 0) + s(r, 0) + s(0, -r) + s(0, r)


def _inject(field: jax.Array, src: jax.Array, value: jax.Array) -> jax.Array:
    """Add value[g] at (src[g, 0], src[g, 1]) of field[g]."""
    return field.at[jnp.arange(field.shape[0]), src[:, 0], src[:, 1]].add(value)


def _record(field: jax.Array, rec_z: int, rec_x: np.ndarray) -> jax.Array:
    if np.all(np.diff(rec_x) == 1):  # contiguous line: a slice, not a gather
        return field[:, rec_z, int(rec_x[0]) : int(rec_x[0]) + len(rec_x)]
    return field[:, rec_z, rec_x]


def _exact_shot(a, kscale, prof, amp, src, wavelet, *, rec_z, rec_x, nt, ring, unroll):
    """G shots of the damped scheme on the padded grid; returns (nt, G, R) receiver data."""
    h, w = a.shape
    pad_mode = "wrap" if ring == "periodic" else "constant"
    k = kscale * prof
    b = 2.0 + 2.0 * _C0 * a - k  # 2 - 5a - k
    c = 1.0 - k

    def step(carry, w_t):
        q, pm = carry
        p = _shifted(q, h, w, 0, 0)
        lap = _C1 * _shift_sum(q, h, w, 1) + _C2 * _shift_sum(q, h, w, 2)
        pn = _inject(b * p - c * pm + a * lap, src, amp * w_t)
        return (_ring(pn, pad_mode), p), _record(pn, rec_z, rec_x)

    zero = jnp.zeros((src.shape[0], h, w), a.dtype) + 0 * a  # shaped (G, H, W), same sharding
    return _time_loop(step, (_ring(zero), zero), wavelet, nt, unroll)


def _pml_coefficients(n: int, pml: int, dx: float, dt: float, vmax, freq: float, r: float):
    """CPML recursion coefficients (a, b) along one axis of n cells with `pml` cells per side."""
    i = np.arange(n, dtype=np.float64)
    depth = np.maximum(np.maximum(pml - i, i - (n - 1 - pml)), 0.0) / pml  # 0 inside, 1 at edge
    length = pml * dx
    sigma = (3.0 * math.log(1.0 / r) / (2.0 * length)) * depth**2  # times vmax
    alpha = math.pi * freq * (1.0 - depth)
    sigma = vmax * jnp.asarray(sigma, jnp.float32)
    alpha = jnp.asarray(alpha, jnp.float32)
    total = sigma + alpha
    a = jnp.exp(-total * dt)
    b = jnp.where(sigma > 0, sigma / jnp.where(total > 0, total, 1.0) * (a - 1.0), 0.0)
    return a, b


def _cpml_strips(q, psi, zeta, coef_a, coef_b, gap, *, axis: int, n: int, width: int, dx: float):
    """CPML terms d(psi)/dn + zeta on the two absorbing strips along one axis.

    q is the ringed field (G, H + 4, W + 4); axis is 1 (z) or 2 (x). psi / zeta hold the strips
    stacked as (2, ...). The strips are `width` = pml + 2 cells wide: beyond the PML psi and zeta
    stay 0, so d(psi)/dn vanishes past the strip and the full-grid result is exactly this one
    placed into zeros (`gap`, made once outside the time loop: XLA:CPU would refill it every
    step). Returns (term on the (G, H, W) grid, psi, zeta).
    """
    other = 3 - axis
    inner = lax.slice_in_dim(q, 2, q.shape[other] - 2, axis=other)
    win = jnp.stack(
        [lax.slice_in_dim(inner, 0, width + 4, axis=axis), lax.slice_in_dim(inner, n - width, n + 4, axis=axis)]
    )
    ax = axis + 1

    def s(f, o):
        return lax.slice_in_dim(f, 2 + o, 2 + o + width, axis=ax)

    def d1(f):
        return (8.0 * (s(f, 1) - s(f, -1)) - (s(f, 2) - s(f, -2))) / (12.0 * dx)

    d2u = (_C0 * s(win, 0) + _C1 * (s(win, 1) + s(win, -1)) + _C2 * (s(win, 2) + s(win, -2))) / (dx * dx)
    psi = coef_a * psi + coef_b * d1(win)
    pad = [(0, 0)] * psi.ndim
    pad[ax] = (2, 2)
    dpsi = d1(jnp.pad(psi, pad))
    zeta = coef_a * zeta + coef_b * (d2u + dpsi)
    term = dpsi + zeta
    full = jnp.concatenate([term[0], gap, term[1]], axis=axis)
    return full, psi, zeta


def _fast_shot(a, vmax, amp, src, wavelet, *, rec_z, rec_x, nt, pml, dx, dt, freq, r, unroll):
    """G shots with a CPML of `pml` cells and a zero outer ring; returns (nt, G, R).

    The interior is the plain 4th-order update; the CPML memory fields live only on the four
    absorbing strips (Pasalic & McGarry's recursion for the 2nd-order equation).
    """
    h, w = a.shape
    g = src.shape[0]
    width = pml + 2
    coefs = []
    for n, shape in ((h, (2, 1, width, 1)), (w, (2, 1, 1, width))):
        ca, cb = _pml_coefficients(n, pml, dx, dt, vmax, freq, r)
        coefs.append(tuple(jnp.stack([c[:width], c[n - width :]]).reshape(shape) for c in (ca, cb)))
    (az, bz), (ax, bx) = coefs
    v2dt2 = a * dx * dx  # (v dt)^2
    # Loop-invariant zeros between the CPML strips (XLA:CPU would refill them every step).
    gap_z = jnp.zeros((g, h - 2 * width, w), a.dtype) + 0 * a[0, 0]
    gap_x = jnp.zeros((g, h, w - 2 * width), a.dtype) + 0 * a[0, 0]

    def step(carry, w_t):
        # The wavefields are carried with their 2-cell zero ring: the new field is written into the
        # interior of the dead previous one (in place), ~10% faster than re-ringing it every step.
        q, qm, psiz, psix, zetaz, zetax = carry
        u, um = _shifted(q, h, w, 0, 0), _shifted(qm, h, w, 0, 0)
        lap = (2.0 * _C0 * u + _C1 * _shift_sum(q, h, w, 1) + _C2 * _shift_sum(q, h, w, 2)) / (dx * dx)
        tz, psiz, zetaz = _cpml_strips(q, psiz, zetaz, az, bz, gap_z, axis=1, n=h, width=width, dx=dx)
        tx, psix, zetax = _cpml_strips(q, psix, zetax, ax, bx, gap_x, axis=2, n=w, width=width, dx=dx)
        un = _inject(2.0 * u - um + v2dt2 * (lap + tz + tx), src, amp * w_t)
        return (lax.dynamic_update_slice(qm, un, (0, 2, 2)), q, psiz, psix, zetaz, zetax), _record(un, rec_z, rec_x)

    zero = jnp.zeros((g, h + 4, w + 4), a.dtype) + 0 * a[0, 0]
    strips_z = jnp.zeros((2, g, width, w), a.dtype) + 0 * a[:width][None, None]
    strips_x = jnp.zeros((2, g, h, width), a.dtype) + 0 * a[:, :width][None, None]
    return _time_loop(step, (zero, zero, strips_z, strips_x, strips_z, strips_x), wavelet, nt, unroll)


def _pad_width(geometry: Geometry, mode: Mode, pml: int) -> int:
    if mode == "exact":
        return geometry.nbc
    g = geometry
    rows = (g.src_z, g.rec_z)
    cols = tuple(g.src_x) + tuple(g.rec_x)
    outside = max(0, -min(rows), max(rows) - (g.nz - 1), -min(cols), max(cols) - (g.nx - 1))
    return pml + outside + 1  # keep every source and receiver >= 1 cell clear of the PML


@functools.partial(
    jax.jit,
    static_argnames=("geometry", "mode", "boundary", "pml", "pml_r", "ndev", "group", "unroll"),
)
def _forward_impl(v, wavelet, *, geometry, mode, boundary, pml, pml_r, ndev, group, unroll):
    g = geometry
    bsz = v.shape[0]
    n = _pad_width(g, mode, pml)
    vp = jnp.pad(v.astype(jnp.float32), ((0, 0), (n, n), (n, n)), mode="edge")
    a = (vp * (g.dt / g.dx)) ** 2
    src_cols = np.asarray(g.src_x) + n
    src_row = g.src_z + n
    amps = vp[:, src_row, src_cols] ** 2 * g.dt**2  # (B, S)
    rec_x = np.asarray(g.rec_x) + n
    rec_z = g.rec_z + n
    vmin = lax.stop_gradient(jnp.min(v, axis=(1, 2)))  # min(v) is a kink: no gradient through it
    vmax = lax.stop_gradient(jnp.max(v, axis=(1, 2)))

    # Tasks of `group` shots of one model, padded to a multiple of the device count; padding
    # repeats the last shot / model and is dropped afterwards.
    s = g.num_shots
    ngroups = -(-s // group)
    ntask = bsz * ngroups
    ntask_pad = -(-ntask // ndev) * ndev
    task_model = np.minimum(np.arange(ntask_pad) // ngroups, bsz - 1)
    task_shots = np.minimum((np.arange(ntask_pad) % ngroups)[:, None] * group + np.arange(group), s - 1)
    task_src = np.stack([np.full(task_shots.shape, src_row), src_cols[task_shots]], axis=-1)

    common = dict(rec_z=rec_z, rec_x=rec_x, nt=g.nt, unroll=unroll)
    if mode == "exact":
        prof = jnp.asarray(damping_profile(g))

        def one(i_model, shots, src):
            kscale = vmin[i_model] * g.dt
            return _exact_shot(a[i_model], kscale, prof, amps[i_model, shots], src, wavelet, ring=boundary, **common)
    else:
        pml_args = dict(pml=pml, dx=g.dx, dt=g.dt, freq=g.freq, r=pml_r)

        def one(i_model, shots, src):
            return _fast_shot(a[i_model], vmax[i_model], amps[i_model, shots], src, wavelet, **pml_args, **common)

    def run(tm, ts, tsrc):
        return lax.map(lambda t: one(*t), (tm, ts, tsrc))

    tasks = tuple(jnp.asarray(t, jnp.int32) for t in (task_model, task_shots, task_src))
    if ndev > 1:
        mesh = Mesh(np.asarray(jax.local_devices()[:ndev]), ("tasks",))
        run = jax.shard_map(run, mesh=mesh, in_specs=P("tasks"), out_specs=P("tasks"))
    rec = run(*tasks)  # (tasks, nt, group, R)
    flat = np.arange(bsz * s)
    rec = rec[(flat // s) * ngroups + (flat % s) // group, :, (flat % s) % group]
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
      unroll: time steps per scan iteration (2 was fastest on CPU in both modes).

    Returns:
      (B, shots, nt, receivers) float32 pressure, positive direct-arrival peak (OpenFWI sign);
      without a batch axis for 2-D input. Differentiable with respect to ``velocity``.
    """
    g = geometry if geometry is not None else Geometry()
    if mode not in ("exact", "fast"):
        raise ValueError(f"unknown mode {mode!r}; use 'exact' or 'fast'")
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
    bsz, nshot = v.shape[0], g.num_shots
    ndev = _num_devices(bsz * nshot, num_devices)
    if mode == "exact":
        group = 1  # one shot's wavefields (~1.2 MB) stay in a core's cache
    else:  # small grids: vectorize over shots, split a model's shots only to feed every device
        group = -(-nshot // min(nshot, -(-ndev // bsz)))
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
    )
    return out[0] if squeeze else out


def _num_devices(ntask: int, requested: int | None) -> int:
    avail = jax.local_device_count()
    if requested is not None:
        if not 1 <= requested <= avail:
            raise ValueError(f"num_devices={requested} but {avail} local devices exist")
        return requested
    return min(avail, ntask)
