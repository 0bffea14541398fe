"""The physics term of the training loss (``--config.loss.physics=W``): the waveform misfit between
a batch's seismic data and what the fast acoustic solver makes of the predicted velocity.

With ``loss.l1 = loss.l2 = 0`` it is the only term: unsupervised training in the manner of UPFWI
(Jin et al., ICLR 2022), which needs seismic data only. The misfit is the mean squared difference
of the two gathers after the dataset's seismic normalization (log transform, min-max), the form the
network reads, so W weighs it against the velocity loss in comparable units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fwi_jax.data.datasets import DatasetSpec
from fwi_jax.data.transforms import denormalize_velocity, normalize_seismic
from fwi_jax.physics import Geometry, forward


def check_geometry(spec: DatasetSpec, geometry: Geometry) -> None:
    """The solver must make the dataset's gathers from its maps: a clear error otherwise."""
    gathers = (geometry.num_shots, geometry.nt, geometry.num_receivers)
    if tuple(spec.seismic_shape) != gathers or tuple(spec.velocity_shape[-2:]) != (geometry.nz, geometry.nx):
        raise ValueError(
            f"loss.physics needs OpenFWI-shaped data ({gathers} gathers of {geometry.nz} x {geometry.nx} maps); "
            f"dataset {spec.name!r} has {tuple(spec.seismic_shape)} gathers of {tuple(spec.velocity_shape)} maps. "
            "Set loss.physics=0 for it"
        )
    geometry.check_cfl(spec.label_max)


def waveform_misfit(pred: jax.Array, seismic: jax.Array, spec: DatasetSpec, geometry: Geometry) -> jax.Array:
    """Mean squared difference of normalized gathers.

    pred: (B, H, W, 1) normalized velocity; seismic: (B, T, R, S) normalized data (NHWC batches).
    """
    v = jnp.clip(denormalize_velocity(pred[..., 0].astype(jnp.float32), spec), spec.label_min, spec.label_max)
    syn = forward(v, geometry, mode="fast", unroll=1)  # (B, S, T, R); unroll 1: the fastest gradient
    syn = normalize_seismic(jnp.transpose(syn, (0, 2, 3, 1)), spec)
    return jnp.mean((syn - seismic.astype(jnp.float32)) ** 2)
