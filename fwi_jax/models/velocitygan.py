"""VelocityGAN's critic (OpenFWI layer table; the generator is InversionNet), NHWC.

Input: a velocity map (B, H, W, 1) in [-1, 1], e.g. (B, 70, 70, 1). Output: one score per
sample, (B, 1) for OpenFWI's 70 x 70 (the last block's 5 x 5 kernel covers the 5 x 5 map it
meets; other sizes give a flattened (B, n) of scores). 1,180,003 parameters at the reference's
widths. Every block is Conv -> BatchNorm -> LeakyReLU(0.2), as the reference's ConvBlock.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from fwi_jax.models.layers import ConvBlock

CRITIC_DIMS = (32, 64, 128, 256)
CRITIC_BLOCKS = tuple(f"convblock{i}_{j}" for i in range(1, 5) for j in (1, 2)) + ("convblock5",)


class Critic(nn.Module):
    """Velocity map (B, H, W, 1) -> critic scores (B, 1)."""

    dims: tuple[int, int, int, int] = CRITIC_DIMS
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "xla"  # the gradient penalty differentiates it twice: XLA's own convs

    @nn.compact
    def __call__(self, velocity: jax.Array, train: bool = False) -> jax.Array:
        if velocity.ndim != 4 or velocity.shape[-1] != 1:
            raise ValueError(f"the critic expects velocity maps (B, H, W, 1), got shape {velocity.shape}")
        t = dict(dtype=self.dtype, conv_impl=self.conv_impl)
        x = velocity.astype(self.dtype)
        for i, width in enumerate(self.dims, start=1):  # (B, 35, 35, 32) (B, 18, 18, 64) (B, 9, 9, 128) (B, 5, 5, 256)
            x = ConvBlock(width, strides=(2, 2), **t, name=f"convblock{i}_1")(x, train)  # halves H and W
            x = ConvBlock(width, **t, name=f"convblock{i}_2")(x, train)
        x = ConvBlock(1, (5, 5), padding=((0, 0), (0, 0)), **t, name="convblock5")(x, train)  # (B, 1, 1, 1)
        return x.reshape(x.shape[0], -1).astype(jnp.float32)  # (B, 1)
