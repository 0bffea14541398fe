"""Full reference recipe on OpenFWI curvefault-b (download it first; see docs/data.md).

    python -m fwi_jax.train --config configs/curvefault_b.py --workdir runs/curvefault-b \
        --config.data.root=/data/curvefault-b
"""

from fwi_jax.config import dataset_config


def get_config(arg=None):
    return dataset_config("curvefault-b")
