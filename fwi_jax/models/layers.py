"""Conv-BN-activation blocks with PyTorch's paddings, initialization and BatchNorm settings.

Inside every block the submodules are named CONV_NAME or DECONV_NAME, then BATCHNORM_NAME:
Flax's automatic names for the first nn.Conv / nn.ConvTranspose / nn.BatchNorm, whichever
convolution form runs (fwi_jax.models.cpu_convs). Checkpoints and the weight port's key map
depend on these names; tests/test_models.py checks them.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from fwi_jax.models import cpu_convs
from fwi_jax.models.cpu_convs import Padding

CONV_NAME = "Conv_0"
DECONV_NAME = "ConvTranspose_0"
BATCHNORM_NAME = "BatchNorm_0"

# PyTorch's default conv init: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in)).
torch_conv_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# PyTorch ConvTranspose2d takes fan_in from the *output* channels (its weight is (in, out, kh, kw)).
torch_deconv_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", in_axis=-1, out_axis=-2)


def torch_bias_init(fan_in: int) -> Callable:
    """U(+-1/sqrt(fan_in)), PyTorch's default conv bias init."""
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TorchBatchNorm(nn.Module):
    """BatchNorm2d exactly as PyTorch: batch statistics in training (biased variance, two-pass),
    running averages with momentum 0.1 whose variance is the *unbiased* one (n / (n - 1)).

    flax.linen.BatchNorm keeps the biased variance, which differs by 16/15 at InversionNet's 1 x 1
    bottleneck with batch 16; imported reference weights and training curves need PyTorch's rule.
    Variables are named like flax.linen.BatchNorm's (params scale / bias, batch_stats mean / var).
    Statistics and normalization run in float32 whatever the compute dtype.
    """

    momentum: float = 0.1  # PyTorch convention: new = (1 - m) old + m batch
    epsilon: float = 1e-5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        x32 = x.astype(jnp.float32)
        if train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x32, axis=axes)
            var = jnp.mean(jnp.square(x32 - mean), axis=axes)
            if not self.is_initializing():
                n = x.size // c
                m = self.momentum
                ra_mean.value = (1 - m) * ra_mean.value + m * mean
                ra_var.value = (1 - m) * ra_var.value + m * var * (n / max(n - 1, 1))
        else:
            mean, var = ra_mean.value, ra_var.value
        y = (x32 - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias
        return y.astype(self.dtype)


class ConvBlock(nn.Module):
    """Conv2d (with bias) -> BatchNorm -> LeakyReLU(0.2) (or tanh / no activation)."""

    features: int
    kernel: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: Padding = ((1, 1), (1, 1))
    activation: str = "leaky_relu"
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "auto"  # auto | xla | einsum (fwi_jax.models.cpu_convs)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        fan_in = x.shape[-1] * self.kernel[0] * self.kernel[1]
        init = dict(kernel_init=torch_conv_kernel_init, bias_init=torch_bias_init(fan_in))
        conv = cpu_convs.conv(
            self.features, self.kernel, self.strides, self.padding, x.shape, train=train, impl=self.conv_impl,
            dtype=self.dtype, name=CONV_NAME, **init,
        )  # fmt: skip
        x = conv(x)
        x = TorchBatchNorm(dtype=self.dtype, name=BATCHNORM_NAME)(x, train)
        return activate(x, self.activation)


class DeconvBlock(nn.Module):
    """ConvTranspose2d (with bias) -> BatchNorm -> LeakyReLU(0.2), PyTorch output sizes.

    PyTorch's ConvTranspose2d(k, s, p) equals a fractionally strided conv with padding k - 1 - p
    on each side; its kernel is this one spatially flipped (see the weight port's key map).
    """

    features: int
    kernel: tuple[int, int] = (4, 4)
    strides: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (1, 1)  # PyTorch's `padding` argument
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "auto"  # auto | xla | einsum (fwi_jax.models.cpu_convs)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        fan_in = self.features * self.kernel[0] * self.kernel[1]
        flax_padding = tuple((k - 1 - p, k - 1 - p) for k, p in zip(self.kernel, self.padding, strict=True))
        init = dict(kernel_init=torch_deconv_kernel_init, bias_init=torch_bias_init(fan_in))
        deconv = cpu_convs.conv_transpose(
            self.features, self.kernel, self.strides, flax_padding, x.shape, train=train, impl=self.conv_impl,
            dtype=self.dtype, name=DECONV_NAME, **init,
        )  # fmt: skip
        x = deconv(x)
        x = TorchBatchNorm(dtype=self.dtype, name=BATCHNORM_NAME)(x, train)
        return activate(x, "leaky_relu")


def activate(x: jax.Array, name: str) -> jax.Array:
    if name == "leaky_relu":
        return nn.leaky_relu(x, negative_slope=0.2)  # reference slope; JAX's default is 0.01
    if name == "tanh":
        return jnp.tanh(x)
    if name == "none":
        return x
    raise ValueError(f"unknown activation {name!r}")
