"""2D constant-density acoustic finite differences in JAX: the physics of one task of shots
(leapfrog in time, 4th order in space). `fwi_jax.physics.solver` packs shots into tasks, spreads
them over devices and is the public entry (`forward`).

Two boundary treatments share one time loop:

* exact (`exact_shots`) reproduces the scheme that made the OpenFWI data: velocity edge-padded by
  ``nbc`` cells, a first-order damping term with a quadratic profile scaled by the model's minimum
  velocity (corners take the x profile), a stencil that wraps periodically at the padded edge,
  and the source added as ``p += v^2 dt^2 s(t)`` to the new time level.
* fast (`fast_shots`) keeps the same interior update and source but absorbs with a thin
  convolutional PML (Pasalic & McGarry style, for the 2nd-order equation) behind a zero ring, so
  the grid is ~7x smaller.

The time loop is a two-level scan whose inner level is ``jax.checkpoint``-ed, so reverse mode
stores ~2 sqrt(nt) wavefields instead of nt.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fwi_jax.physics.geometry import Geometry

Mode = Literal["exact", "fast"]
Boundary = Literal["periodic", "zero"]

# 4th-order second-derivative weights: centre, +-1, +-2 neighbours.
_C0, _C1, _C2 = -5.0 / 2.0, 4.0 / 3.0, -1.0 / 12.0
_LN_1E7 = math.log(1e7)
# Shots per fast-mode task, the innermost axis of its fields: one AVX2 vector of float32. 16 was
# slower on this project's CPU (more padding, fields out of cache).
FAST_LANES = 8


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


def time_loop(step, carry, wavelet: jax.Array, nt: int, unroll: int):
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


def exact_shots(a, kscale, prof, amp, src, wavelet, *, rec_z, rec_x, nt, ring, unroll):
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
    return time_loop(step, (_ring(zero), zero), wavelet, nt, unroll)


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


def _cpml_strips(q, psi, zeta, coef_a, coef_b, *, axis: int, other: int, n: int, width: int, dx: float):
    """CPML terms d(psi)/dn + zeta on the two absorbing strips along one grid axis.

    q is a ringed field (2 zero cells around the grid axes); `axis` is the grid axis of the strips
    and `other` the other grid axis. psi / zeta hold the two strips stacked as (2, ...). The strips
    are `width` = pml + 2 cells wide: beyond the PML psi and zeta stay 0, so d(psi)/dn vanishes
    past the strip and the full-grid term is exactly this one with zeros elsewhere. Returns
    (term, psi, zeta), all stacked (2, ...).
    """
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
    return dpsi + zeta, psi, zeta


def fast_shots(a, vmax, amp, src, wavelet, *, rec_z, rec_x, nt, pml, dx, dt, freq, r, unroll):
    """L shots (of any models) with a CPML of `pml` cells and a zero outer ring; returns (nt, L, R).

    `a` (v dt / dx)^2 is (L, H, W) and `vmax` (L,), or (1, H, W) and (1,) when all L shots are of
    one model (read once per cell, not L times); `src` is (L, 2). With FAST_LANES shots the fields
    are (H, W, L), shots innermost, so every stencil offset and both CPML strip directions read
    whole SIMD vectors (the x strips are only pml + 2 cells wide: with x innermost they vectorize
    poorly); with fewer shots (small batches spread over devices) the fields stay (L, H, W), as a
    lane axis of 3-5 would vectorize worse still. The interior is the plain 4th-order update; the
    CPML memory fields live only on the four absorbing strips (Pasalic & McGarry's recursion for
    the 2nd-order equation).
    """
    lanes, (h, w) = src.shape[0], a.shape[1:]
    width = pml + 2
    lanes_last = lanes >= FAST_LANES
    zax, xax = (0, 1) if lanes_last else (1, 2)

    def grid(shape_zx):  # a (L, z, x)-shaped array in this layout
        return jnp.moveaxis(shape_zx, 0, -1) if lanes_last else shape_zx

    def at(z, x):  # an index / offset tuple for grid position (z, x)
        return (z, x, 0) if lanes_last else (0, z, x)

    def coefficients(n, axis):  # (2, ...) strip coefficients broadcasting against stacked strips
        ca, cb = jax.vmap(lambda vm: _pml_coefficients(n, pml, dx, dt, vm, freq, r))(vmax)  # (L, n)
        out = []
        for c in (ca, cb):
            c = jnp.stack([c[:, :width], c[:, n - width :]], axis=1)  # (L, 2, width)
            c = c[:, :, :, None] if axis == zax else c[:, :, None, :]  # (L, 2, width, 1) / (L, 2, 1, width)
            out.append(jnp.moveaxis(c, 0, -1) if lanes_last else jnp.moveaxis(c, 0, 1))
        return tuple(out)

    az, bz = coefficients(h, zax)
    ax, bx = coefficients(w, xax)
    v2dt2 = grid(a * dx * dx)  # (v dt)^2
    lane = jnp.arange(lanes)
    cols = slice(int(rec_x[0]), int(rec_x[0]) + len(rec_x)) if np.all(np.diff(rec_x) == 1) else rec_x

    def shifted(f, dz, dxx):
        f = lax.slice_in_dim(f, 2 + dz, 2 + dz + h, axis=zax)
        return lax.slice_in_dim(f, 2 + dxx, 2 + dxx + w, axis=xax)

    def step(carry, w_t):
        # Wavefields are carried with their 2-cell zero ring: the new field is written into the
        # interior of the dead previous one (in place), ~10% faster than re-ringing it every step.
        # tz_full / tx_full are the strip terms on the full grid: the strips are written into them
        # in place and the zeros between never change (a concatenation with zeros every step
        # cost more).
        q, qm, psiz, psix, zetaz, zetax, tz_full, tx_full = carry
        u, um = shifted(q, 0, 0), shifted(qm, 0, 0)
        near = shifted(q, -1, 0) + shifted(q, 1, 0) + shifted(q, 0, -1) + shifted(q, 0, 1)
        far = shifted(q, -2, 0) + shifted(q, 2, 0) + shifted(q, 0, -2) + shifted(q, 0, 2)
        lap = (2.0 * _C0 * u + _C1 * near + _C2 * far) / (dx * dx)
        tz, psiz, zetaz = _cpml_strips(q, psiz, zetaz, az, bz, axis=zax, other=xax, n=h, width=width, dx=dx)
        tx, psix, zetax = _cpml_strips(q, psix, zetax, ax, bx, axis=xax, other=zax, n=w, width=width, dx=dx)
        dus = lax.dynamic_update_slice
        tz_full = dus(dus(tz_full, tz[0], at(0, 0)), tz[1], at(h - width, 0))
        tx_full = dus(dus(tx_full, tx[0], at(0, 0)), tx[1], at(0, w - width))
        un = 2.0 * u - um + v2dt2 * (lap + tz_full + tx_full)
        if lanes_last:
            un = un.at[src[:, 0], src[:, 1], lane].add(amp * w_t)
            rec = un[rec_z, cols].T
        else:
            un = un.at[lane, src[:, 0], src[:, 1]].add(amp * w_t)
            rec = un[:, rec_z, cols]
        qn = dus(qm, un, at(2, 2))
        return (qn, q, psiz, psix, zetaz, zetax, tz_full, tx_full), rec  # rec: (L, R)

    like = 0 * a[0, 0, 0]  # zeros that follow a's sharding / tracing
    zero = grid(jnp.zeros((lanes, h + 4, w + 4), a.dtype)) + like
    full = grid(jnp.zeros((lanes, h, w), a.dtype)) + like
    strips_z = jnp.stack([grid(jnp.zeros((lanes, width, w), a.dtype))] * 2) + like
    strips_x = jnp.stack([grid(jnp.zeros((lanes, h, width), a.dtype))] * 2) + like
    carry = (zero, zero, strips_z, strips_x, strips_z, strips_x, full, full)
    return time_loop(step, carry, wavelet, nt, unroll)


def pad_width(geometry: Geometry, mode: Mode, pml: int) -> int:
    if mode == "exact":
        return geometry.nbc
    g = geometry
    rows = (g.src_z, g.rec_z)
    cols = tuple(g.src_x) + tuple(g.rec_x)
    outside = max(0, -min(rows), max(rows) - (g.nz - 1), -min(cols), max(cols) - (g.nx - 1))
    return pml + outside + 1  # keep every source and receiver >= 1 cell clear of the PML
