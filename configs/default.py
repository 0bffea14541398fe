"""The OpenFWI reference recipe for InversionNet (AdamW 1e-4, wd 1e-4, L1 + L2, batch 256, 120 epochs).

    python -m fwi_jax.train --config configs/default.py --workdir runs/fva --config.data.root=/data/flatvel-a

Needs a downloaded OpenFWI dataset with train.txt / val.txt split files in data.root (see docs/data.md).
"""

from fwi_jax.config import default_config


def get_config(arg=None):
    return default_config()
