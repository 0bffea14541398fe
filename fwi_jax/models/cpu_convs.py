"""Convolution forms for XLA:CPU, behind one selector (`conv` / `conv_transpose`).

XLA:CPU runs the gradient of a matrix product several times faster than a convolution's gradient,
so on CPU (``conv_impl="auto"``) some of InversionNet's convolutions are computed as matrix
products: a dense layer when the kernel covers the input, shifted products for stride 1, im2col
for strided convs, sub-pixel phases for stride-2 transposed convs, and a custom weight gradient,
by shape rules or, on a CPU that was tuned (`conv_tuning`), by measurement; there a layer can also
take one full im2col product at stride 1 or XLA's forward with the products' gradients. Every form
has nn.Conv's / nn.ConvTranspose's parameters and numbers, so checkpoints move freely between
backends. GPUs and TPUs use XLA's own convolutions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fwi_jax.models import conv_tuning

Padding = Sequence[tuple[int, int]]
IMPLS = ("auto", "xla", "einsum")


def use_einsum_convs(impl: str) -> bool:
    """'auto' picks the einsum forms on CPU, where XLA's convolution gradients are slow."""
    if impl not in IMPLS:
        raise ValueError(f"conv_impl must be 'auto', 'xla' or 'einsum', got {impl!r}")
    return impl == "einsum" or (impl == "auto" and jax.default_backend() == "cpu")


def _taps(x: jax.Array, kernel: tuple[int, int], strides: tuple[int, int], out: tuple[int, int]) -> jax.Array:
    """im2col: (B, H, W, C) padded input -> (B, Ho, Wo, kh * kw, C) strided windows."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, strides, out
    cols = [x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw] for i in range(kh) for j in range(kw)]
    return jnp.stack(cols, axis=3)


@jax.custom_vjp
def patch_matmul(patches: jax.Array, kernel: jax.Array) -> jax.Array:
    """im2col patches (..., K) @ kernel (K, O), with a weight gradient that transposes the smaller operand.

    The weight gradient contracts over every row (M = batch x pixels), and XLA:CPU's product wants
    that axis innermost on its left operand, so it transposes one M-row operand. Left alone (JAX's
    (g^T @ patches)^T) it fused the BatchNorm backward into g's transpose, reading with a large
    stride; `_patch_matmul_bwd` instead transposes the patches as a plain copy or, when g is
    narrower (O < K) and in float32, g materialized first. Measured in one process, alternating:
    patches^T @ g made the batch-16 train step 7-13% faster than JAX's order; the narrower choice
    then 0.95x that (batch 16) and 0.82x the quickstart's step (`small` widths, batch 8, whose
    convblock1 has K = 35, O = 8).
    """
    return jnp.einsum("...k,ko->...o", patches, kernel)


def _patch_matmul_fwd(patches: jax.Array, kernel: jax.Array):
    return patch_matmul(patches, kernel), (patches, kernel)


def _patch_matmul_bwd(res, g: jax.Array):
    patches, kernel = res
    lead = tuple(range(patches.ndim - 1))
    d_patches = jnp.einsum("...o,ko->...k", g, kernel)
    # Transpose g (the barrier keeps its producer out of the copy); float32 only: in bfloat16 this order
    # compiles to a plain dot, for which XLA:CPU has no bf16 x bf16 -> f32 kernel (fails at run time).
    if g.shape[-1] < patches.shape[-1] and g.dtype == patches.dtype == jnp.float32:
        g = jax.lax.optimization_barrier(g)
        d_kernel = jax.lax.dot_general(g, patches, ((lead, lead), ((), ())), preferred_element_type=jnp.float32).T
    else:  # transpose the patches
        d_kernel = jax.lax.dot_general(patches, g, ((lead, lead), ((), ())), preferred_element_type=jnp.float32)
    return d_patches, d_kernel.astype(kernel.dtype)


patch_matmul.defvjp(_patch_matmul_fwd, _patch_matmul_bwd)


class _MatmulForm(nn.Module):
    """Fields and parameters shared by the matrix-product forms: nn.Conv's names, shapes and dtypes."""

    features: int
    kernel: tuple[int, int]
    padding: Padding  # Flax-style
    dtype: jnp.dtype = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()  # nn.Conv's default
    bias_init: Callable = nn.initializers.zeros

    def params_and_input(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """float32 kernel (kh, kw, in, out) and bias (out,), and the input, all in the compute dtype."""
        kernel = self.param("kernel", self.kernel_init, (*self.kernel, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return kernel.astype(self.dtype), bias.astype(self.dtype), x.astype(self.dtype)


class EinsumConv(_MatmulForm):
    """nn.Conv's parameters and numbers, computed with matrix products: a dense layer when the
    kernel covers the input, shifted products for stride 1, im2col + one product otherwise.

    XLA:CPU runs the gradient of a matrix product several times faster than a convolution's
    gradient (the (k, 1) time-axis convs of the encoder above all).
    """

    strides: tuple[int, int] = (1, 1)
    stride1: str = "shifted"  # stride-1 convs as "shifted" products or one full "im2col" product
    forward: str = "matmul"  # "xla": XLA's convolution forward, this form only for the gradients

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel, bias, x = self.params_and_input(x)
        kh, kw = self.kernel
        padded = tuple(n + sum(p) for n, p in zip(x.shape[1:3], self.padding, strict=True))
        if padded == (kh, kw):  # the kernel covers the input (convblock8): a plain dense layer
            x = jnp.pad(x, ((0, 0), tuple(self.padding[0]), tuple(self.padding[1]), (0, 0)))
            return (x.reshape(x.shape[0], -1) @ kernel.reshape(-1, self.features) + bias)[:, None, None, :]
        plan = (tuple(self.strides), tuple(tuple(p) for p in self.padding), self.stride1)
        if self.forward == "xla":
            return _xla_forward(x, kernel, plan) + bias
        return _matmul_conv(x, kernel, plan) + bias


def _matmul_conv(x: jax.Array, kernel: jax.Array, plan: tuple) -> jax.Array:
    """A convolution (no bias) as matrix products: shifted products or im2col for stride 1 (``plan``'s
    last entry), im2col + one product otherwise."""
    strides, padding, stride1 = plan
    if strides == (1, 1) and stride1 == "shifted":
        return _shifted_products(x, kernel, padding)
    x = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    size = kernel.shape[:2]
    out = tuple((n - k) // s + 1 for n, k, s in zip(x.shape[1:3], size, strides, strict=True))
    taps = _taps(x, size, strides, out)
    return patch_matmul(taps.reshape(taps.shape[:3] + (-1,)), kernel.reshape(-1, kernel.shape[-1]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _xla_forward(x: jax.Array, kernel: jax.Array, plan: tuple) -> jax.Array:
    """XLA's convolution forward, the matrix-product form's gradients (`_matmul_conv`).

    On XLA:CPU a convolution's forward alone can be twice as fast as its matrix-product form (the
    time-axis convs, batch 16) while its gradients are several times slower; this form takes the
    faster side of each.
    """
    strides, padding, _ = plan
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _xla_forward_fwd(x, kernel, plan):
    return _xla_forward(x, kernel, plan), (x, kernel)


def _xla_forward_bwd(plan, res, g):
    x, kernel = res
    # The matrix-product form's own primal is unused here and removed by XLA: only its transposes run.
    _, vjp = jax.vjp(lambda x, k: _matmul_conv(x, k, plan), x, kernel)
    return vjp(g)


_xla_forward.defvjp(_xla_forward_fwd, _xla_forward_bwd)


def _shifted_products(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """Stride-1 conv as one product and shifted row slices: im2col along the width only (none for
    (k, 1) kernels), z = cols @ [K_0 | ... | K_kh-1] with one block per kernel row, then
    y[r] = sum_i z_i[r + i - pad_top].

    The same multiply-adds as full im2col (no padded rows are multiplied) with a kh-times smaller
    copy forward and col2im backward. Batch 16 on this CPU, forward + backward with BatchNorm and
    LeakyReLU, against full im2col: time-axis convblock2_2 0.84x, the chain convblock2_1 .. 3_1
    0.94x; 3 x 3 convs 0.54x (128 channels, 32 x 35), 0.85x (256, 16 x 18), 0.84x (256, 8 x 9),
    1.0x (512, 5 x 5).
    """
    (kh, kw), width = kernel.shape[:2], x.shape[2] + sum(padding[1]) - kernel.shape[1] + 1
    if kw > 1 or tuple(padding[1]) != (0, 0):
        x = jnp.pad(x, ((0, 0), (0, 0), tuple(padding[1]), (0, 0)))
        x = jnp.stack([x[:, :, j : j + width] for j in range(kw)], axis=3).reshape(x.shape[:2] + (width, -1))
    out = kernel.shape[-1]
    z = patch_matmul(x, jnp.concatenate([kernel[i].reshape(-1, out) for i in range(kh)], axis=1))
    z = jnp.pad(z, ((0, 0), tuple(padding[0]), (0, 0), (0, 0)))
    n = z.shape[1] - kh + 1
    y = sum(z[:, i : i + n, :, i * out : (i + 1) * out] for i in range(kh))
    # Without the barrier XLA recomputes the sum inside each BatchNorm fusion that reads y, reading
    # the kh-times-wider z each time (time-axis block 1.3x slower than im2col instead of 0.84x).
    return jax.lax.optimization_barrier(y)


class _Phase(NamedTuple):
    """Output rows o = 2 i + a of one phase a along one axis."""

    taps: list[int]  # kernel rows t that reach these outputs
    offsets: list[int]  # input row read by tap t, relative to i
    count: int  # number of such outputs


def _phase_plan(k: int, pad_lo: int, n_out: int) -> list[_Phase]:
    plan = []
    for a in range(2):
        taps = [t for t in range(k) if (a + t - pad_lo) % 2 == 0]
        plan.append(_Phase(taps, [(a + t - pad_lo) // 2 for t in taps], len(range(a, n_out, 2))))
    return plan


class EinsumConvTranspose(_MatmulForm):
    """nn.ConvTranspose (stride 2, explicit padding) in sub-pixel form: one einsum per output phase.

    Output row o = 2 i + a only meets kernel rows t with (a + t - P) even, reading input row
    i + (a + t - P) / 2; each phase is a small stride-1 conv, so no inserted zeros are multiplied.
    Same parameters and numbers as nn.ConvTranspose(strides=(2, 2), padding=P).

    From 10 x 10 inputs on (deconv3_1 .. 5_1), when every phase reads an equally long run of
    adjacent input rows (k4 s2 p1: rows i-1, i and i, i+1), all phases share one im2col: one product
    with the phases' kernels side by side gives every phase at every window position, and each
    phase keeps its shifted slice. Batch 16, forward + backward, against one im2col per phase:
    0.62-0.68x the time at 40 x 40, 0.85-0.91x at 20 x 20, 0.92x at 10 x 10, 1.16-1.26x at 5 x 5
    (the extra window row and column is 44% more work there).
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel, bias, x = self.params_and_input(x)
        kh, kw = self.kernel
        dims = list(zip(x.shape[1:3], self.kernel, self.padding, strict=True))
        size = [2 * (n - 1) + lo + hi - k + 2 for n, k, (lo, hi) in dims]
        one_pixel = x.shape[1:3] == (1, 1)
        if one_pixel and all(0 <= lo - m + 1 and lo < k for (_, k, (lo, _)), m in zip(dims, size, strict=True)):
            # One input pixel (deconv1_1): output (i, j) = x @ kernel[lo_h - i, lo_w - j], a dense layer.
            rows, cols = (lo - np.arange(m) for (_, _, (lo, _)), m in zip(dims, size, strict=True))
            dense = kernel[rows][:, cols]  # (Ho, Wo, C, O)
            y = jnp.einsum("bc,hwco->bhwo", x[:, 0, 0], dense)
            return y + bias.astype(self.dtype)
        plans = [_phase_plan(k, lo, n_out) for (_, k, (lo, _)), n_out in zip(dims, size, strict=True)]
        if min(x.shape[1:3]) >= _SHARED_WINDOW_MIN and all(_runs_of_equal_length(plan) for plan in plans):
            phases = _shared_window_phases(x, kernel, plans)
            return _interleave(phases, x.shape[0], size, self.features, self.dtype) + bias.astype(self.dtype)
        margin = max(
            [0]
            + [-d for plan in plans for p in plan for d in p.offsets]
            + [d + p.count - n for (n, _, _), plan in zip(dims, plans, strict=True) for p in plan for d in p.offsets]
        )
        xp = jnp.pad(x, ((0, 0), (margin, margin), (margin, margin), (0, 0)))
        phases = {}
        for a, ph in enumerate(plans[0]):
            for b, pw in enumerate(plans[1]):
                if not (ph.taps and pw.taps and ph.count and pw.count):
                    continue
                cols = [
                    xp[:, margin + dh : margin + dh + ph.count, margin + dw : margin + dw + pw.count]
                    for dh in ph.offsets
                    for dw in pw.offsets
                ]
                taps = jnp.stack(cols, axis=3)
                phases[a, b] = patch_matmul(taps.reshape(taps.shape[:3] + (-1,)), _phase_kernel(kernel, ph, pw))
        return _interleave(phases, x.shape[0], size, self.features, self.dtype) + bias.astype(self.dtype)


def _phase_kernel(kernel: jax.Array, rows: _Phase, cols: _Phase) -> jax.Array:
    """The (taps_h * taps_w * C, O) matrix of the kernel taps that reach one output phase."""
    return kernel[np.asarray(rows.taps)][:, np.asarray(cols.taps)].reshape(-1, kernel.shape[-1])


_SHARED_WINDOW_MIN = 10  # input pixels per axis from which one shared im2col beats one per phase


def _runs_of_equal_length(plan: list[_Phase]) -> bool:
    """Every phase reads adjacent input rows, the same number of them, and has outputs."""
    n = len(plan[0].taps)
    return n > 0 and all(
        p.count > 0 and len(p.taps) == n and p.offsets == list(range(p.offsets[0], p.offsets[0] + n)) for p in plan
    )


def _shared_window_phases(x: jax.Array, kernel: jax.Array, plans: list[list[_Phase]]) -> dict:
    """All phases from one im2col of (n_h x n_w) windows: window position r serves phase a's
    output i = r - (offset_a - lowest offset); the product computes every phase at every position."""
    n = [len(plan[0].taps) for plan in plans]
    lo = [min(p.offsets[0] for p in plan) for plan in plans]
    positions = [max(p.offsets[0] + p.count for p in plan) - first for plan, first in zip(plans, lo, strict=True)]
    pads = [
        (max(0, -first), max(0, first + m + k - 1 - length))
        for first, m, k, length in zip(lo, positions, n, x.shape[1:3], strict=True)
    ]
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    start = [first + pad for first, (pad, _) in zip(lo, pads, strict=True)]
    cols = [
        xp[:, start[0] + dh : start[0] + dh + positions[0], start[1] + dw : start[1] + dw + positions[1]]
        for dh in range(n[0])
        for dw in range(n[1])
    ]
    patches = jnp.stack(cols, axis=3).reshape(x.shape[0], positions[0], positions[1], -1)
    features = kernel.shape[-1]
    y = patch_matmul(patches, jnp.concatenate([_phase_kernel(kernel, ph, pw) for ph in plans[0] for pw in plans[1]], 1))
    phases = {}
    for a, ph in enumerate(plans[0]):
        for b, pw in enumerate(plans[1]):
            r, c, i = ph.offsets[0] - lo[0], pw.offsets[0] - lo[1], a * len(plans[1]) + b
            phases[a, b] = y[:, r : r + ph.count, c : c + pw.count, i * features : (i + 1) * features]
    return phases


def _interleave(phases: dict, batch: int, size: list[int], features: int, dtype) -> jax.Array:
    """Put phase (a, b) at rows a::2, columns b::2 of the output."""
    h, w = size
    if h % 2 == 0 and w % 2 == 0 and len(phases) == 4:  # reshape, no scatter
        rows = [jnp.stack([phases[a, 0], phases[a, 1]], axis=3) for a in range(2)]  # (B, h/2, w/2, 2, O)
        return jnp.stack(rows, axis=2).reshape(batch, h, w, features)
    y = jnp.zeros((batch, h, w, features), dtype)
    for (a, b), v in phases.items():
        y = y.at[:, a::2, b::2].set(v)
    return y


def conv(
    features: int,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    padding: Padding,
    in_shape: tuple[int, ...],
    *,
    train: bool,
    impl: str,
    **layer_args,
) -> nn.Module:
    """The Conv2d of a block, in the form measured fastest for its shape on this backend.

    ``layer_args`` (dtype, kernel_init, bias_init, name) go to whichever form is chosen. Measured
    per layer on XLA:CPU (fwd + bwd, batch 16): the matrix-product forms win for the (k, 1)
    time-axis convs, for convs that cover their input (convblock8: 3.5x) and for 3x3 convs with
    >= 128 input channels in training (convblock5_1: 1.25x, deconv1_2: 1.9x; their forward alone is
    faster as an XLA conv); narrower 3x3 convs lose (deconv5_2: 0.65x).
    """
    matmul = (_matmul_by_rule(in_shape, kernel, padding, train) or impl == "einsum") and use_einsum_convs(impl)
    form = _tuned(matmul, impl, "conv", in_shape, features, kernel, strides, padding, train, layer_args)
    return conv_form(form, features, kernel, strides, padding, **layer_args)


def _matmul_by_rule(in_shape, kernel, padding, train: bool) -> bool:
    """The shape rule for conv_impl=auto on a CPU: the matrix-product form for time-axis convs,
    convs that cover their input and, in training, convs of >= 128 input channels."""
    time_axis = kernel[1] == 1 and kernel[0] > 1
    return time_axis or conv_tuning.covers_input(in_shape, kernel, padding) or (train and in_shape[-1] >= 128)


def rule_form(layer: conv_tuning.LayerSpec) -> str:
    """The form the shape rules give ``layer`` on a CPU (what an untuned machine runs)."""
    if layer.kind == "conv_transpose":
        return "matmul" if layer.strides == (2, 2) else "xla"
    return "matmul" if _matmul_by_rule(layer.in_shape, layer.kernel, layer.padding, layer.train) else "xla"


def conv_form(form: str, features: int, kernel, strides, padding: Padding, **layer_args) -> nn.Module:
    """A Conv2d in a named form (`conv_tuning.FORMS`): "xla", "matmul" (the matrix-product form),
    "im2col" (stride 1 as one full im2col product instead of shifted products) or "hybrid" (XLA's
    convolution forward, the matrix-product form's gradients)."""
    if form == "xla":
        return nn.Conv(features, kernel, strides, padding=tuple(padding), param_dtype=jnp.float32, **layer_args)
    stride1 = "im2col" if form == "im2col" else "shifted"
    forward = "xla" if form == "hybrid" else "matmul"
    return EinsumConv(features, kernel, padding, strides=strides, stride1=stride1, forward=forward, **layer_args)


def _tuned(rule: bool, impl: str, kind: str, in_shape, features, kernel, strides, padding, train, layer_args) -> str:
    """The form of a layer: the shape rule's ("matmul" when ``rule``, else "xla"), unless this CPU
    measured the layer (`conv_tuning`: ``python -m fwi_jax.models tune``); only for
    conv_impl="auto" on a CPU."""
    layer = conv_tuning.spec(kind, in_shape, features, kernel, strides, padding,
                             layer_args.get("dtype", jnp.float32), train)  # fmt: skip
    conv_tuning.record(layer)  # for the tuner, which traces the model on any backend
    ruled = "matmul" if rule else "xla"
    if impl != "auto" or jax.default_backend() != "cpu":
        return ruled
    return conv_tuning.tuned_form(layer) or ruled


def conv_transpose(
    features: int,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    padding: Padding,
    in_shape: tuple[int, ...],
    *,
    train: bool,
    impl: str,
    **layer_args,
) -> nn.Module:
    """The ConvTranspose2d of a block: sub-pixel phases on CPU for stride 2, XLA's otherwise.

    ``padding`` is Flax's (of the dilated input), not PyTorch's argument; ``layer_args`` as `conv`'s.
    """
    matmul = tuple(strides) == (2, 2) and use_einsum_convs(impl)
    if tuple(strides) == (2, 2):  # the sub-pixel form exists for stride 2 only
        form = _tuned(matmul, impl, "conv_transpose", in_shape, features, kernel, strides, padding, train,
                      layer_args)  # fmt: skip
        matmul = form == "matmul"
    if matmul:
        return EinsumConvTranspose(features, kernel, padding, **layer_args)
    return nn.ConvTranspose(features, kernel, strides, padding=padding, param_dtype=jnp.float32, **layer_args)
