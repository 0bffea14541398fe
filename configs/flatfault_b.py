"""Full reference recipe on OpenFWI flatfault-b (download it first; see docs/data.md).

    python -m fwi_jax.train --config configs/flatfault_b.py --workdir runs/flatfault-b \
        --config.data.root=/data/flatfault-b
"""

from fwi_jax.config import dataset_config


def get_config(arg=None):
    return dataset_config("flatfault-b")
