"""Full reference recipe on OpenFWI curvefault-a (download it first; see docs/data.md).

    python -m fwi_jax.train --config configs/curvefault_a.py --workdir runs/curvefault-a \
        --config.data.root=/data/curvefault-a
"""

from fwi_jax.config import dataset_config


def get_config(arg=None):
    return dataset_config("curvefault-a")
