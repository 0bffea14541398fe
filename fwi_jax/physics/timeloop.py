"""The solver's time loops, shared by both boundary treatments (`fwi_jax.physics.acoustic`,
`fwi_jax.physics.cpml`), and how reverse mode runs through them.

A scheme is a small frozen dataclass with ``prepare`` (coefficients from the parameters),
``init`` / ``snapshot`` / ``resume`` (its state), ``step`` (one time step: new state, receiver
record and the term the velocity multiplies) and ``adjoint_init`` / ``adjoint_step`` /
``gradients`` (its transposed step). `run` picks the gradient:

* ``"adjoint"`` (default): a ``jax.custom_vjp`` over the whole loop, the hand-written discrete
  adjoint. Both schemes are linear in their wavefields, u_{t+1} = F(u_t, u_{t-1}, memory) + src w_t
  with records d_t = R u_{t+1}, and the velocity enters as one coefficient field m multiplying a
  term of the step (m * term_t). Reverse mode is then the same recursion run backward in time with
  the transposed step, and dJ/dm = sum_t lambda_{t+1} * term_t. The forward wavefield is rebuilt
  segment by segment from ~sqrt(nt) saved states (checkpointing: one forward again, ~2 sqrt(nt)
  fields kept), so a gradient costs 2.5-3.6 forwards, without the full-grid passes that JAX's
  transposes of the step's slices and in-place updates make (the reason "autodiff" costs 6-10 forwards).
  Checkpointing was chosen over rebuilding the wavefield backward in time from saved boundaries:
  exact mode's damping makes the time-reversed scheme unstable, and the absorbing strips that would
  have to be saved every step are most of the grid (95% in exact mode, 60% in fast mode).
* ``"autodiff"``: JAX's own reverse mode through a two-level scan whose inner level is
  ``jax.checkpoint``-ed (also ~2 sqrt(nt) fields); it supports forward mode too (``jax.jvp``).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

Gradient = Literal["adjoint", "autodiff"]


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
    """Run ``step(carry, w_t) -> (carry, record_t)`` over nt steps, rematerializing segments
    (the ``gradient="autodiff"`` path: JAX's reverse mode through the scan)."""
    outer, inner = _segments(nt)
    w = jnp.pad(wavelet[:nt], (0, outer * inner - nt)).reshape(outer, inner)

    @jax.checkpoint
    def segment(c, w_seg):
        return lax.scan(step, c, w_seg, unroll=unroll)

    _, rec = lax.scan(segment, carry, w)
    return rec.reshape((outer * inner,) + rec.shape[2:])[:nt]


def _steps_padded(x: jax.Array, nt: int, total: int) -> jax.Array:
    """The first nt entries of x along its leading axis, zero-padded to `total`."""
    return jnp.pad(x[:nt], [(0, total - nt)] + [(0, 0)] * (x.ndim - 1))


def _recording(scheme, ctx):
    """``scheme``'s time step as a scan body: (state, w_t) -> (state, receiver record)."""

    def step(c, w_t):
        c, rec, _ = scheme.step(ctx, c, w_t, False)
        return c, rec

    return step


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _simulate(scheme, nt: int, unroll: int, params: dict, consts: dict, wavelet: jax.Array) -> jax.Array:
    """Receiver data (nt, lanes, R) of ``scheme``; reverse mode by its adjoint (see above)."""
    ctx = scheme.prepare(params, consts)
    _, rec = lax.scan(_recording(scheme, ctx), scheme.init(ctx), wavelet[:nt], unroll=unroll)
    return rec


def _simulate_fwd(scheme, nt, unroll, params, consts, wavelet):
    ctx = scheme.prepare(params, consts)
    outer, inner = _segments(nt)

    def segment(c, w_seg):
        snap = scheme.snapshot(c)  # the state this segment starts from: the backward pass rebuilds it
        c, rec = lax.scan(_recording(scheme, ctx), c, w_seg, unroll=unroll)
        return c, (snap, rec)

    w = _steps_padded(wavelet, nt, outer * inner).reshape(outer, inner)
    _, (snaps, rec) = lax.scan(segment, scheme.init(ctx), w)
    rec = rec.reshape((outer * inner,) + rec.shape[2:])[:nt]
    return rec, (params, consts, wavelet, snaps)


def _simulate_bwd(scheme, nt, unroll, res, rec_bar):
    params, consts, wavelet, snaps = res
    ctx = scheme.prepare(params, consts)
    outer, inner = _segments(nt)
    w = _steps_padded(wavelet, nt, outer * inner).reshape(outer, inner)
    r = _steps_padded(rec_bar, nt, outer * inner).reshape((outer, inner) + rec_bar.shape[1:])

    def segment_back(adj, xs):
        snap, w_seg, r_seg = xs

        def step(c, w_t):  # the forward again, keeping the term the velocity multiplies
            c, _, term = scheme.step(ctx, c, w_t, True)
            return c, term

        _, terms = lax.scan(step, scheme.resume(ctx, snap), w_seg, unroll=unroll)
        return lax.scan(lambda a, x: scheme.adjoint_step(ctx, a, *x), adj, (r_seg, terms, w_seg), reverse=True,
                        unroll=unroll)  # fmt: skip

    adj, dw = lax.scan(segment_back, scheme.adjoint_init(ctx), (snaps, w, r), reverse=True)
    d_wavelet = jnp.zeros_like(wavelet).at[:nt].set(dw.reshape(-1)[:nt])
    return scheme.gradients(ctx, adj, params), None, d_wavelet


_simulate.defvjp(_simulate_fwd, _simulate_bwd)


def run(scheme, params: dict, consts: dict, wavelet: jax.Array, nt: int, unroll: int, gradient: Gradient) -> jax.Array:
    """Receiver data (nt, lanes, R) of ``scheme`` from ``params`` (differentiable: the velocity's
    coefficient field and the source amplitudes), ``consts`` and the wavelet."""
    if gradient == "adjoint":
        return _simulate(scheme, nt, unroll, params, consts, wavelet)
    ctx = scheme.prepare(params, consts)
    return time_loop(_recording(scheme, ctx), scheme.init(ctx), wavelet, nt, unroll)
