"""Fast mode (`fast_shots`): the interior update of `fwi_jax.physics.acoustic` with a thin
convolutional PML (Pasalic & McGarry's recursion for the 2nd-order equation) on four absorbing
strips behind a zero ring, and its transposed step for the hand-written adjoint."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fwi_jax.physics import timeloop
from fwi_jax.physics.acoustic import C0, C1, C2, receivers
from fwi_jax.physics.timeloop import Gradient

# Shots per fast-mode task, the innermost axis of its fields: one AVX2 vector of float32. 16 was
# slower on this project's CPU (more padding, fields out of cache).
FAST_LANES = 8


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


def _moved(f: jax.Array, axis: int, offset: int, length: int) -> jax.Array:
    """f[2 + offset : 2 + offset + length] along `axis` (a field with 2 margin cells each side)."""
    return lax.slice_in_dim(f, 2 + offset, 2 + offset + length, axis=axis)


def _d1(f: jax.Array, axis: int, length: int, dx: float) -> jax.Array:
    """4th-order first derivative along `axis` of a field with 2 margin cells each side."""
    s = functools.partial(_moved, f, axis, length=length)
    return (8.0 * (s(1) - s(-1)) - (s(2) - s(-2))) / (12.0 * dx)


def _d2(f: jax.Array, axis: int, length: int, dx: float) -> jax.Array:
    """4th-order second derivative along `axis` of a field with 2 margin cells each side."""
    s = functools.partial(_moved, f, axis, length=length)
    return (C0 * s(0) + C1 * (s(1) + s(-1)) + C2 * (s(2) + s(-2))) / (dx * dx)


def _pad_axis(f: jax.Array, axis: int, n: int) -> jax.Array:
    pad = [(0, 0)] * f.ndim
    pad[axis] = (n, n)
    return jnp.pad(f, pad)


def _add_into(field: jax.Array, part: jax.Array, axis: int, start: int) -> jax.Array:
    """field with `part` added at [start : start + len] along `axis` (in place)."""
    n = part.shape[axis]
    return lax.dynamic_update_slice_in_dim(field, lax.slice_in_dim(field, start, start + n, axis=axis) + part, start,
                                           axis)  # fmt: skip


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
    psi = coef_a * psi + coef_b * _d1(win, ax, width, dx)
    dpsi = _d1(_pad_axis(psi, ax, 2), ax, width, dx)
    zeta = coef_a * zeta + coef_b * (_d2(win, ax, width, dx) + dpsi)
    return dpsi + zeta, psi, zeta


# Zero cells carried on each side of the adjoint's strip fields along the strip axis: the stencils
# of its window contributions read 4 cells past the strip, and carried zeros need no pad per step.
_MARGIN = 4


def _cpml_strips_adjoint(acc, g, carried, coef_a, coef_b, coef_b_wide, *, axis: int, n: int, width: int, dx: float):
    """The transpose of `_cpml_strips` (and of writing its term into the full grid).

    g is the cotangent of the full-grid term (unringed). `carried` = (z, p, s), stacked (2, ...)
    strip fields with _MARGIN zero cells each side of the strip axis: z and p the cotangents of
    the strips' newest zeta and psi, not yet multiplied by coef_a (the next call applies it), s a
    scratch buffer. Adds the cotangent of the strips' windows of the field to `acc` (unringed; the
    ring is constant zero) and returns (acc, carried). d1 is antisymmetric and d2 symmetric, so
    their transposes are -d1 / d2 on the zero-margined strip. Every update is written in place into
    the interior of its carried buffer; the barriers keep XLA from fusing a buffer's old value into
    later readers, which made it copy every carried strip field every step (the adjoint steps
    1.2x slower at unroll 2 without them, measured).
    """
    ax, lo, hi = axis + 1, _MARGIN, _MARGIN + width  # the strip inside its margined buffer

    def strip_part(f, start, stop):
        return lax.slice_in_dim(f, start, stop, axis=ax)

    z, p, s = carried
    t_bar = jnp.stack([lax.slice_in_dim(g, 0, width, axis=axis), lax.slice_in_dim(g, n - width, n, axis=axis)])
    z = lax.optimization_barrier(lax.dynamic_update_slice_in_dim(z, coef_a * strip_part(z, lo, hi) + t_bar, lo, ax))
    s = lax.dynamic_update_slice_in_dim(s, t_bar + coef_b * strip_part(z, lo, hi), lo, ax)
    p_new = coef_a * strip_part(p, lo, hi) - _d1(strip_part(s, lo - 2, hi + 2), ax, width, dx)
    p = lax.optimization_barrier(lax.dynamic_update_slice_in_dim(p, p_new, lo, ax))
    win_bar = _d2(coef_b_wide * z, ax, width + 4, dx) - _d1(coef_b_wide * p, ax, width + 4, dx)
    # The windows span [-2, width + 2) and [n - width - 2, n + 2) of the unringed axis.
    acc = _add_into(acc, lax.slice_in_dim(win_bar[0], 2, width + 4, axis=axis), axis, 0)
    acc = _add_into(acc, lax.slice_in_dim(win_bar[1], 0, width + 2, axis=axis), axis, n - width - 2)
    return acc, (z, p, s)


@dataclasses.dataclass(frozen=True)
class _Fast:
    """Fast mode for L shots (of any models): the interior update plus a CPML on four strips.

    With FAST_LANES shots the fields are (H, W, L), shots innermost, so every stencil offset and
    both CPML strip directions read whole SIMD vectors (the x strips are only pml + 2 cells wide:
    with x innermost they vectorize poorly); with fewer shots (small batches spread over devices)
    the fields stay (L, H, W), as a lane axis of 3-5 would vectorize worse still. The velocity
    enters as m = (v dt)^2: u_{t+1} = 2 u_t - u_{t-1} + m (lap u_t + CPML terms) + src.
    """

    h: int
    w: int
    lanes: int
    pml: int
    dx: float
    dt: float
    freq: float
    r: float
    rec_z: int
    rec_x: tuple[int, ...]

    @property
    def lanes_last(self) -> bool:
        return self.lanes >= FAST_LANES

    @property
    def axes(self) -> tuple[int, int]:  # (z, x) grid axes of a field
        return (0, 1) if self.lanes_last else (1, 2)

    @property
    def width(self) -> int:
        return self.pml + 2

    def grid(self, shape_zx: jax.Array) -> jax.Array:  # a (L, z, x)-shaped array in this layout
        return jnp.moveaxis(shape_zx, 0, -1) if self.lanes_last else shape_zx

    def at(self, z: int, x: int) -> tuple[int, int, int]:  # an index / offset tuple for grid position (z, x)
        return (z, x, 0) if self.lanes_last else (0, z, x)

    def _coefficients(self, vmax, n: int, axis: int):
        """(2, ...) strip coefficients broadcasting against the stacked strips."""
        width = self.width
        ca, cb = jax.vmap(lambda vm: _pml_coefficients(n, self.pml, self.dx, self.dt, vm, self.freq, self.r))(vmax)
        out = []
        for c in (ca, cb):
            c = jnp.stack([c[:, :width], c[:, n - width :]], axis=1)  # (L, 2, width)
            c = c[:, :, :, None] if axis == self.axes[0] else c[:, :, None, :]  # (L, 2, width, 1) / (L, 2, 1, width)
            out.append(jnp.moveaxis(c, 0, -1) if self.lanes_last else jnp.moveaxis(c, 0, 1))
        return tuple(out)

    def prepare(self, params, consts):
        zax, xax = self.axes
        vmax = consts["vmax"]
        az, bz = self._coefficients(vmax, self.h, zax)
        ax, bx = self._coefficients(vmax, self.w, xax)
        m = self.grid(params["a"] * (self.dx * self.dx))  # (v dt)^2
        # b with the adjoint's zero margins (the windows' stencils read the margined strips)
        b_wide = (_pad_axis(bz, zax + 1, _MARGIN), _pad_axis(bx, xax + 1, _MARGIN))
        return {"m": m, "a": params["a"], "amp": params["amp"], "src": consts["src"], "z": (az, bz), "x": (ax, bx),
                "b_wide": b_wide}  # fmt: skip

    def _zeros(self, ctx, shape_zx):
        return self.grid(jnp.zeros((self.lanes, *shape_zx), ctx["m"].dtype)) + 0 * ctx["a"][0, 0, 0]  # same sharding

    def init(self, ctx):
        zero = self._zeros(ctx, (self.h + 4, self.w + 4))
        strips_z, strips_x = self._zero_strips(ctx, self.width)
        return self.resume(ctx, (zero, zero, strips_z, strips_x, strips_z, strips_x))

    def _zero_strips(self, ctx, width: int):
        """Zero (2, ...) strip pairs `width` cells wide: along z, then along x."""
        return (jnp.stack([self._zeros(ctx, (width, self.w))] * 2), jnp.stack([self._zeros(ctx, (self.h, width))] * 2))

    def snapshot(self, carry):
        return carry[:6]  # the last two are scratch buffers, rebuilt by resume

    def resume(self, ctx, snap):
        full = self._zeros(ctx, (self.h, self.w))
        return (*snap, full, full)

    def _lane_index(self, field_zx_index):
        src, lane = field_zx_index, jnp.arange(self.lanes)
        return (src[:, 0], src[:, 1], lane) if self.lanes_last else (lane, src[:, 0], src[:, 1])

    def _rec_index(self):
        cols = receivers(self.rec_x)
        return (self.rec_z, cols) if self.lanes_last else (slice(None), self.rec_z, cols)

    def _laplacian(self, q):
        """(2 C0 u + C1 near + C2 far) / dx^2 over the interior of a ringed field."""
        zax, xax = self.axes
        h, w = self.h, self.w

        def shifted(dz, dxx):
            return _moved(_moved(q, zax, dz, h), xax, dxx, w)

        near = shifted(-1, 0) + shifted(1, 0) + shifted(0, -1) + shifted(0, 1)
        far = shifted(-2, 0) + shifted(2, 0) + shifted(0, -2) + shifted(0, 2)
        return (2.0 * C0 * shifted(0, 0) + C1 * near + C2 * far) / (self.dx * self.dx)

    def step(self, ctx, carry, w_t, with_term: bool):
        # Wavefields are carried with their 2-cell zero ring: the new field is written into the
        # interior of the dead previous one (in place), ~10% faster than re-ringing it every step.
        # tz_full / tx_full are the strip terms on the full grid: the strips are written into them
        # in place and the zeros between never change (a concatenation with zeros every step
        # cost more).
        zax, xax = self.axes
        h, w, width, dx = self.h, self.w, self.width, self.dx
        q, qm, psiz, psix, zetaz, zetax, tz_full, tx_full = carry
        u, um = _moved(_moved(q, zax, 0, h), xax, 0, w), _moved(_moved(qm, zax, 0, h), xax, 0, w)
        lap = self._laplacian(q)
        (az, bz), (ax, bx) = ctx["z"], ctx["x"]
        tz, psiz, zetaz = _cpml_strips(q, psiz, zetaz, az, bz, axis=zax, other=xax, n=h, width=width, dx=dx)
        tx, psix, zetax = _cpml_strips(q, psix, zetax, ax, bx, axis=xax, other=zax, n=w, width=width, dx=dx)
        dus = lax.dynamic_update_slice
        tz_full = dus(dus(tz_full, tz[0], self.at(0, 0)), tz[1], self.at(h - width, 0))
        tx_full = dus(dus(tx_full, tx[0], self.at(0, 0)), tx[1], self.at(0, w - width))
        term = lap + tz_full + tx_full
        # With the term stored (the adjoint's forward again) it is materialized once, for the update
        # and the store alike: otherwise XLA copies the carried fields every step at unroll 2.
        if with_term:
            term = lax.optimization_barrier(term)
        un = 2.0 * u - um + ctx["m"] * term
        un = un.at[self._lane_index(ctx["src"])].add(ctx["amp"] * w_t)
        rec = un[self._rec_index()]
        rec = rec.T if self.lanes_last else rec  # (L, R)
        qn = dus(qm, un, self.at(2, 2))
        return (qn, q, psiz, psix, zetaz, zetax, tz_full, tx_full), rec, (term if with_term else None)

    def adjoint_init(self, ctx):
        lam = self._zeros(ctx, (self.h, self.w))
        strips_z, strips_x = self._zero_strips(ctx, self.width + 2 * _MARGIN)
        return lam, lam, (strips_z,) * 3, (strips_x,) * 3, lam, 0 * ctx["amp"]

    def adjoint_step(self, ctx, adj, r_t, term, w_t):
        # lam: lambda_{t+1} without its record term yet; lamm: lambda_{t+2}; the strips' carried
        # fields (`_cpml_strips_adjoint`); gm, gamp: gradients so far.
        zax, xax = self.axes
        h, w, width, dx = self.h, self.w, self.width, self.dx
        lam, lamm, strips_z, strips_x, gm, gamp = adj
        lam = lam.at[self._rec_index()].add(r_t.T if self.lanes_last else r_t)
        at_src = lam[self._lane_index(ctx["src"])]
        g = ctx["m"] * lam  # the cotangent of the step's term
        q = jnp.pad(g, [(2, 2) if i in (zax, xax) else (0, 0) for i in range(g.ndim)])
        new = 2.0 * lam - lamm + self._laplacian(q)  # the zero-edged Laplacian is symmetric
        (az, bz), (ax, bx), (bz_wide, bx_wide) = ctx["z"], ctx["x"], ctx["b_wide"]
        new, strips_z = _cpml_strips_adjoint(new, g, strips_z, az, bz, bz_wide, axis=zax, n=h, width=width, dx=dx)
        new, strips_x = _cpml_strips_adjoint(new, g, strips_x, ax, bx, bx_wide, axis=xax, n=w, width=width, dx=dx)
        return (new, lam, strips_z, strips_x, gm + lam * term, gamp + at_src * w_t), jnp.sum(ctx["amp"] * at_src)

    def gradients(self, ctx, adj, params):
        gm = adj[4] * (self.dx * self.dx)
        ga = jnp.moveaxis(gm, -1, 0) if self.lanes_last else gm  # (L, H, W)
        if params["a"].shape[0] == 1:  # one model read by every lane
            ga = jnp.sum(ga, axis=0, keepdims=True)
        return {"a": ga, "amp": adj[5]}


def fast_shots(a, vmax, amp, src, wavelet, *, rec_z, rec_x, nt, pml, dx, dt, freq, r, unroll,
               gradient: Gradient = "adjoint"):  # fmt: skip
    """L shots (of any models) with a CPML of `pml` cells and a zero outer ring; returns (nt, L, R).

    `a` (v dt / dx)^2 is (L, H, W) and `vmax` (L,), or (1, H, W) and (1,) when all L shots are of
    one model (read once per cell, not L times); `src` is (L, 2). The CPML memory fields live only
    on the four absorbing strips (Pasalic & McGarry's recursion for the 2nd-order equation).
    """
    scheme = _Fast(
        h=a.shape[1], w=a.shape[2], lanes=src.shape[0], pml=pml, dx=float(dx), dt=float(dt), freq=float(freq),
        r=float(r), rec_z=int(rec_z), rec_x=tuple(int(x) for x in rec_x),
    )  # fmt: skip
    return timeloop.run(scheme, {"a": a, "amp": amp}, {"vmax": vmax, "src": src}, wavelet, nt, unroll, gradient)
