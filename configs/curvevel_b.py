"""Full reference recipe on OpenFWI curvevel-b (download it first; see docs/data.md).

    python -m fwi_jax.train --config configs/curvevel_b.py --workdir runs/curvevel-b \
        --config.data.root=/data/curvevel-b
"""

from fwi_jax.config import dataset_config


def get_config(arg=None):
    return dataset_config("curvevel-b")
