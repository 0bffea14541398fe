"""Model registry: name -> Flax module built from a config."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp

from fwi_jax.models.inversionnet import (
    DEFAULT_DIMS,
    Decoder,
    Encoder,
    InversionNet,
    decoder_layout,
    encoder_output_size,
)
from fwi_jax.models.layers import ConvBlock, DeconvBlock

# Width presets (dim1..dim5); "openfwi" is the reference network (24,409,123 parameters).
PRESETS: dict[str, tuple[int, ...]] = {
    "openfwi": DEFAULT_DIMS,
    "narrow": (16, 32, 64, 128, 256),
    "small": (8, 16, 32, 64, 128),
    "tiny": (4, 8, 8, 16, 16),
}

MODELS: dict[str, Callable[..., nn.Module]] = {"inversionnet": InversionNet}


def build_model(name: str, dims, output_size, compute_dtype: str = "float32", conv_impl: str = "auto") -> nn.Module:
    """A model from its registry name, widths (a preset name or 5 ints) and output (H, W)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    if isinstance(dims, str) and "," in dims:  # "8,16,32,64,256": how a config or a flag spells 5 ints
        try:
            dims = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise ValueError(f"model dims {dims!r}: expected 5 comma-separated ints such as '8,16,32,64,128'") from None
    elif isinstance(dims, str):
        if dims not in PRESETS:
            raise ValueError(
                f"unknown width preset {dims!r}; choose one of {sorted(PRESETS)} or give 5 ints ('8,16,32,64,128')"
            )
        dims = PRESETS[dims]
    dims = tuple(int(d) for d in dims)
    if len(dims) != 5 or min(dims) < 1:
        raise ValueError(f"model dims must be 5 positive ints (dim1..dim5), got {dims}")
    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    if compute_dtype not in dtypes:
        raise ValueError(f"compute_dtype must be one of {sorted(dtypes)}, got {compute_dtype!r}")
    if conv_impl not in ("auto", "xla", "einsum"):
        raise ValueError(f"conv_impl must be 'auto', 'xla' or 'einsum', got {conv_impl!r}")
    return MODELS[name](
        dims=dims,
        output_size=tuple(int(n) for n in output_size),
        dtype=dtypes[compute_dtype],
        conv_impl=conv_impl,
    )


__all__ = [
    "MODELS",
    "PRESETS",
    "ConvBlock",
    "DeconvBlock",
    "Decoder",
    "Encoder",
    "InversionNet",
    "build_model",
    "decoder_layout",
    "encoder_output_size",
]
