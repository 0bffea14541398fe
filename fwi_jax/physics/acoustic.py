"""2D constant-density acoustic finite differences in JAX: the physics of one task of shots
(leapfrog in time, 4th order in space). `fwi_jax.physics.solver` packs shots into tasks, spreads
them over devices and is the public entry (`forward`).

Two boundary treatments share the time loops of `fwi_jax.physics.timeloop` (and their
hand-written adjoint):

* exact (`exact_shots`, here) reproduces the scheme that made the OpenFWI data: velocity edge-padded by
  ``nbc`` cells, a first-order damping term with a quadratic profile scaled by the model's minimum
  velocity (corners take the x profile), a stencil that wraps periodically at the padded edge,
  and the source added as ``p += v^2 dt^2 s(t)`` to the new time level.
* fast (`fwi_jax.physics.cpml.fast_shots`) keeps the same interior update and source but absorbs
  with a thin convolutional PML (Pasalic & McGarry style, for the 2nd-order equation) behind a zero
  ring, so the grid is ~7x smaller.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from fwi_jax.physics import timeloop
from fwi_jax.physics.geometry import Geometry
from fwi_jax.physics.timeloop import Gradient

Mode = Literal["exact", "fast"]
Boundary = Literal["periodic", "zero"]

# 4th-order second-derivative weights: centre, +-1, +-2 neighbours.
C0, C1, C2 = -5.0 / 2.0, 4.0 / 3.0, -1.0 / 12.0
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


def receivers(rec_x: tuple[int, ...]) -> slice | np.ndarray:
    """Receiver columns: a slice for a contiguous line (not a gather), else the indices."""
    if np.all(np.diff(rec_x) == 1):
        return slice(rec_x[0], rec_x[0] + len(rec_x))
    return np.asarray(rec_x)


@dataclasses.dataclass(frozen=True)
class _Exact:
    """OpenFWI's damped scheme for G shots of one model (fields (G, H, W)):
    p_{t+1} = b p_t - c p_{t-1} + a N(p_t) + src, b = 2 + 2 C0 a - k, c = 1 - k, N the neighbour
    sums of the stencil (periodic or zero at the edge: symmetric either way, so N^T = N)."""

    h: int
    w: int
    rec_z: int
    rec_x: tuple[int, ...]
    ring: str  # jnp.pad mode of the outer edge: "wrap" or "constant"

    def prepare(self, params, consts):
        a, k = params["a"], consts["k"]
        return {"a": a, "amp": params["amp"], "src": consts["src"], "b": 2.0 + 2.0 * C0 * a - k, "c": 1.0 - k}

    def init(self, ctx):
        zero = jnp.zeros((ctx["src"].shape[0], self.h, self.w), ctx["a"].dtype) + 0 * ctx["a"]  # same sharding
        return _ring(zero, self.ring), zero

    def snapshot(self, carry):
        return carry

    def resume(self, ctx, snap):
        return snap

    def step(self, ctx, carry, w_t, with_term: bool):
        q, pm = carry
        h, w = self.h, self.w
        p = _shifted(q, h, w, 0, 0)
        lap = C1 * _shift_sum(q, h, w, 1) + C2 * _shift_sum(q, h, w, 2)
        pn = _inject(ctx["b"] * p - ctx["c"] * pm + ctx["a"] * lap, ctx["src"], ctx["amp"] * w_t)
        term = lap + 2.0 * C0 * p if with_term else None  # what `a` multiplies (b holds 2 C0 a)
        return (_ring(pn, self.ring), p), pn[:, self.rec_z, receivers(self.rec_x)], term

    def adjoint_init(self, ctx):
        zero = jnp.zeros((ctx["src"].shape[0], self.h, self.w), ctx["a"].dtype) + 0 * ctx["a"]
        return zero, zero, zero, 0 * ctx["amp"]

    def adjoint_step(self, ctx, adj, r_t, term, w_t):
        # lam: lambda_{t+1} without its record term yet; lam2: lambda_{t+2}; ga, gamp: gradients so far.
        lam, lam2, ga, gamp = adj
        h, w, src = self.h, self.w, ctx["src"]
        lam = lam.at[:, self.rec_z, receivers(self.rec_x)].add(r_t)
        at_src = lam[jnp.arange(lam.shape[0]), src[:, 0], src[:, 1]]
        mu = _ring(ctx["a"] * lam, self.ring)
        new = ctx["b"] * lam - ctx["c"] * lam2 + C1 * _shift_sum(mu, h, w, 1) + C2 * _shift_sum(mu, h, w, 2)
        return (new, lam, ga + lam * term, gamp + at_src * w_t), jnp.sum(ctx["amp"] * at_src)

    def gradients(self, ctx, adj, params):
        return {"a": jnp.sum(adj[2], axis=0), "amp": adj[3]}


def exact_shots(a, kscale, prof, amp, src, wavelet, *, rec_z, rec_x, nt, ring, unroll, gradient: Gradient = "adjoint"):
    """G shots of the damped scheme on the padded grid; returns (nt, G, R) receiver data."""
    h, w = a.shape
    scheme = _Exact(h, w, int(rec_z), tuple(int(x) for x in rec_x), "wrap" if ring == "periodic" else "constant")
    return timeloop.run(scheme, {"a": a, "amp": amp}, {"k": kscale * prof, "src": src}, wavelet, nt, unroll, gradient)


def pad_width(geometry: Geometry, mode: Mode, pml: int) -> int:
    """Cells added on each side of the model: exact mode's nbc, fast mode's PML and a margin."""
    if mode == "exact":
        return geometry.nbc
    g = geometry
    rows = (g.src_z, g.rec_z)
    cols = tuple(g.src_x) + tuple(g.rec_x)
    outside = max(0, -min(rows), max(rows) - (g.nz - 1), -min(cols), max(cols) - (g.nx - 1))
    return pml + outside + 1  # keep every source and receiver >= 1 cell clear of the PML
