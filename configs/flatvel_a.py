"""Full reference recipe on OpenFWI flatvel-a (download it first; see docs/data.md).

    python -m fwi_jax.train --config configs/flatvel_a.py --workdir runs/flatvel-a \
        --config.data.root=/data/flatvel-a
"""

from fwi_jax.config import dataset_config


def get_config(arg=None):
    return dataset_config("flatvel-a")
