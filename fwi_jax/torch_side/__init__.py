"""Programs that run under an interpreter with PyTorch, often not fwi_jax's (a Python 3.11 venv).

They import only torch, numpy and each other, never fwi_jax or JAX: `fwi_jax.torchenv` runs them
as scripts with this folder on their path. `torch_inversionnet` is InversionNet written from the
layer table (parity tests, benchmarks); `pth_convert` reads and writes .pth files.
"""
