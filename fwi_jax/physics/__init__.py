"""Acoustic wave physics: wavelets, acquisition geometry and the finite-difference solver."""

from fwi_jax.physics.acoustic import damping_profile
from fwi_jax.physics.geometry import CFL_LIMIT_O4, Geometry, openfwi_geometry
from fwi_jax.physics.solver import forward
from fwi_jax.physics.wavelets import ricker, ricker_length

__all__ = [
    "CFL_LIMIT_O4",
    "Geometry",
    "damping_profile",
    "forward",
    "openfwi_geometry",
    "ricker",
    "ricker_length",
]
