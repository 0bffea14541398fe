"""fwi_jax: InversionNet and data-driven full-waveform inversion in JAX."""

__version__ = "0.1.0"
