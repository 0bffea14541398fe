"""Quickstart: the `small` InversionNet (widths 8..128) on a generated FlatVel-A-like dataset (the CLI's default).

    python -m fwi_jax.train --config configs/quickstart.py --workdir runs/quickstart

First use generates 448 samples with the fast solver (~30 s; cached under
~/.cache/fwi_jax/datasets), then trains 45 epochs of 48 steps at batch 8 (AdamW, lr 2e-3 with a
cosine decay). About 11 minutes on a 2-core CPU, install included. `configs/quickstart.py:smoke`
shrinks everything to seconds (used by the tests).
"""

from fwi_jax.config import quickstart_config


def get_config(arg=None):
    return quickstart_config(arg)
