"""Pure normalization transforms of the reference (never modify their input)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fwi_jax.data.datasets import DatasetSpec


def log_transform(x, k: float = 1.0):
    """sign(x) * log1p(k |x|); works on numpy and JAX arrays."""
    xp = _xp(x)
    return xp.sign(x) * xp.log1p(k * xp.abs(x))


def _xp(x):
    return jnp if isinstance(x, jax.Array) else np


def _minmax(x, lo: float, hi: float):
    return (x - lo) / (hi - lo) * 2.0 - 1.0


def normalize_seismic(x, spec: DatasetSpec):
    """Raw pressure -> [-1, 1]: log transform, then min-max with the dataset's transformed bounds."""
    lo, hi = float(log_transform(spec.data_min)), float(log_transform(spec.data_max))
    return _minmax(log_transform(x), lo, hi)


def normalize_velocity(v, spec: DatasetSpec):
    """m/s -> [-1, 1] (1 normalized unit = (label_max - label_min) / 2 m/s)."""
    return _minmax(v, spec.label_min, spec.label_max)


def denormalize_velocity(v, spec: DatasetSpec):
    """[-1, 1] -> m/s."""
    return (v + 1.0) / 2.0 * (spec.label_max - spec.label_min) + spec.label_min


def velocity_unit(spec: DatasetSpec) -> float:
    """m/s per normalized unit (1500 for OpenFWI)."""
    return (spec.label_max - spec.label_min) / 2.0


# Keys of a batch as the host reads it (on-disk layout, raw units); the jitted steps normalize it.
RAW_SEISMIC, RAW_VELOCITY = "raw_seismic", "raw_velocity"


def prepare_batch(batch: dict, spec: DatasetSpec) -> tuple[dict, jax.Array | np.bool_]:
    """(normalized NHWC float32 batch, all inputs finite) of a batch in either form.

    A raw batch (``raw_seismic`` (B, S, T, R), ``raw_velocity`` (B, 1, H, W), as on disk) is
    transposed and normalized: inside the jitted steps, on the devices, so the host only reads
    bytes (numpy arrays are handled on the host the same way); a batch already normalized
    (``seismic``, ``velocity``; device-resident data) passes through.
    """
    if RAW_SEISMIC not in batch:
        return batch, jnp.asarray(True)
    raw_s, raw_v = batch[RAW_SEISMIC], batch[RAW_VELOCITY]
    xp = _xp(raw_s)
    finite = xp.all(xp.isfinite(raw_s)) & xp.all(xp.isfinite(raw_v))
    out = {k: v for k, v in batch.items() if k not in (RAW_SEISMIC, RAW_VELOCITY)}
    out["seismic"] = normalize_seismic(xp.transpose(raw_s, (0, 2, 3, 1)), spec).astype(xp.float32)
    out["velocity"] = normalize_velocity(xp.transpose(raw_v, (0, 2, 3, 1)), spec).astype(xp.float32)
    return out, finite
