"""Full reference recipe on OpenFWI flatfault-a (download it first; see docs/data.md).

    python -m fwi_jax.train --config configs/flatfault_a.py --workdir runs/flatfault-a \
        --config.data.root=/data/flatfault-a
"""

from fwi_jax.config import dataset_config


def get_config(arg=None):
    return dataset_config("flatfault-a")
