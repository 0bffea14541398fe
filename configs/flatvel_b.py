"""Full reference recipe on OpenFWI flatvel-b (download it first; see docs/data.md).

    python -m fwi_jax.train --config configs/flatvel_b.py --workdir runs/flatvel-b \
        --config.data.root=/data/flatvel-b
"""

from fwi_jax.config import dataset_config


def get_config(arg=None):
    return dataset_config("flatvel-b")
