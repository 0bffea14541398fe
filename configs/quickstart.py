"""Quickstart: the `small` InversionNet (widths 8..128) on a generated FlatVel-A-like dataset (the CLI's default).

    python -m fwi_jax.train --config configs/quickstart.py --workdir runs/quickstart

First use generates 448 samples with the OpenFWI-exact solver (cached under
~/.cache/fwi_jax/datasets), then trains 16 epochs of 24 steps. About 12 minutes on a 2-core
CPU. `configs/quickstart.py:smoke` shrinks everything to seconds (used by the tests).
"""

from fwi_jax.config import quickstart_config


def get_config(arg=None):
    return quickstart_config(arg)
