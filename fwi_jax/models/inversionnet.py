"""InversionNet (Wu & Lin 2019; OpenFWI layer table) as Flax Linen modules, NHWC.

Input: seismic (B, time, receivers, shots), e.g. (B, 1000, 70, 5). Output: velocity
(B, depth, x, 1) in [-1, 1], e.g. (B, 70, 70, 1). The kernel of the last encoder layer, the
decoder's starting size and the final crop follow from the geometry, so other survey sizes need
no code change.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from fwi_jax.models.layers import ConvBlock, DeconvBlock

DEFAULT_DIMS = (32, 64, 128, 256, 512)


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def encoder_output_size(time_samples: int, receivers: int) -> tuple[int, int]:
    """(H, W) reaching the last encoder conv, which uses it as its kernel ((8, 9) for OpenFWI)."""
    h, w = _conv_out(time_samples, 7, 2, 3), receivers  # convblock1
    for _ in range(3):  # convblock2_1 .. 4_1 stride the time axis only
        h = _conv_out(h, 3, 2, 1)
    for _ in range(3):  # convblock5_1 .. 7_1
        h, w = _conv_out(h, 3, 2, 1), _conv_out(w, 3, 2, 1)
    if h < 1 or w < 1:
        raise ValueError(f"input of {time_samples} x {receivers} is too small for InversionNet's encoder")
    return h, w


def decoder_layout(output_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[tuple[int, int], ...]]:
    """(start size, crop per axis): four x2 transposed convs grow `start` to 16 x start, then crop.

    OpenFWI's 70 x 70: start 5 x 5 -> 80 x 80, crop 5 on every side.
    """
    start = tuple(math.ceil(n / 16) for n in output_size)
    crop = tuple((c // 2, c - c // 2) for c in (s * 16 - n for s, n in zip(start, output_size, strict=True)))
    return start, crop


class _Stages(nn.Module):
    """Widths and block settings shared by the encoder and the decoder."""

    dims: tuple[int, int, int, int, int] = DEFAULT_DIMS
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "auto"  # auto: einsum forms of the slow conv gradients on CPU, XLA convs elsewhere

    @property
    def block_args(self) -> dict:
        return dict(dtype=self.dtype, conv_impl=self.conv_impl)


class Encoder(_Stages):
    """Seismic (B, T, R, S) -> latent (B, 1, 1, dim5)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        d1, d2, d3, d4, d5 = self.dims
        t = self.block_args
        tk, tp = (3, 1), ((1, 1), (0, 0))  # time-only kernels of the first stages
        x = ConvBlock(d1, (7, 1), (2, 1), ((3, 3), (0, 0)), **t, name="convblock1")(x, train)  # (B, 500, 70, 32)
        x = ConvBlock(d2, tk, (2, 1), tp, **t, name="convblock2_1")(x, train)  # (B, 250, 70, 64)
        x = ConvBlock(d2, tk, (1, 1), tp, **t, name="convblock2_2")(x, train)  # (B, 250, 70, 64)
        x = ConvBlock(d2, tk, (2, 1), tp, **t, name="convblock3_1")(x, train)  # (B, 125, 70, 64)
        x = ConvBlock(d2, tk, (1, 1), tp, **t, name="convblock3_2")(x, train)  # (B, 125, 70, 64)
        x = ConvBlock(d3, tk, (2, 1), tp, **t, name="convblock4_1")(x, train)  # (B, 63, 70, 128)
        x = ConvBlock(d3, tk, (1, 1), tp, **t, name="convblock4_2")(x, train)  # (B, 63, 70, 128)
        x = ConvBlock(d3, strides=(2, 2), **t, name="convblock5_1")(x, train)  # (B, 32, 35, 128)
        x = ConvBlock(d3, **t, name="convblock5_2")(x, train)  # (B, 32, 35, 128)
        x = ConvBlock(d4, strides=(2, 2), **t, name="convblock6_1")(x, train)  # (B, 16, 18, 256)
        x = ConvBlock(d4, **t, name="convblock6_2")(x, train)  # (B, 16, 18, 256)
        x = ConvBlock(d4, strides=(2, 2), **t, name="convblock7_1")(x, train)  # (B, 8, 9, 256)
        x = ConvBlock(d4, **t, name="convblock7_2")(x, train)  # (B, 8, 9, 256)
        k = tuple(x.shape[1:3])  # (8, 9) for OpenFWI: collapses the map to 1 x 1
        return ConvBlock(d5, k, padding=((0, 0), (0, 0)), **t, name="convblock8")(x, train)  # (B, 1, 1, 512)


class Decoder(_Stages):
    """Latent (B, 1, 1, dim5) -> velocity (B, H, W, 1) in [-1, 1]."""

    output_size: tuple[int, int] = (70, 70)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        d1, d2, d3, d4, d5 = self.dims
        t = self.block_args
        start, ((top, bottom), (left, right)) = decoder_layout(self.output_size)
        x = DeconvBlock(d5, start, (2, 2), (0, 0), **t, name="deconv1_1")(x, train)  # (B, 5, 5, 512)
        x = ConvBlock(d5, **t, name="deconv1_2")(x, train)  # (B, 5, 5, 512)
        x = DeconvBlock(d4, **t, name="deconv2_1")(x, train)  # (B, 10, 10, 256)
        x = ConvBlock(d4, **t, name="deconv2_2")(x, train)  # (B, 10, 10, 256)
        x = DeconvBlock(d3, **t, name="deconv3_1")(x, train)  # (B, 20, 20, 128)
        x = ConvBlock(d3, **t, name="deconv3_2")(x, train)  # (B, 20, 20, 128)
        x = DeconvBlock(d2, **t, name="deconv4_1")(x, train)  # (B, 40, 40, 64)
        x = ConvBlock(d2, **t, name="deconv4_2")(x, train)  # (B, 40, 40, 64)
        x = DeconvBlock(d1, **t, name="deconv5_1")(x, train)  # (B, 80, 80, 32)
        x = ConvBlock(d1, **t, name="deconv5_2")(x, train)  # (B, 80, 80, 32)
        x = x[:, top : x.shape[1] - bottom, left : x.shape[2] - right]  # (B, 70, 70, 32)
        x = ConvBlock(1, activation="tanh", **t, name="deconv6")(x, train)  # (B, 70, 70, 1)
        return x.astype(jnp.float32)


class InversionNet(nn.Module):
    """Encoder-decoder from shot gathers to a velocity map."""

    dims: tuple[int, int, int, int, int] = DEFAULT_DIMS
    output_size: tuple[int, int] = (70, 70)
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "auto"  # auto: einsum forms of the slow conv gradients on CPU, XLA convs elsewhere

    @nn.compact
    def __call__(self, seismic: jax.Array, train: bool = False) -> jax.Array:
        if seismic.ndim != 4:
            raise ValueError(f"InversionNet expects (B, time, receivers, shots), got shape {seismic.shape}")
        stages = dict(dims=self.dims, dtype=self.dtype, conv_impl=self.conv_impl)
        z = Encoder(**stages, name="encoder")(seismic.astype(self.dtype), train)
        return Decoder(**stages, output_size=tuple(self.output_size), name="decoder")(z, train)
