"""Full reference recipe on OpenFWI curvevel-a (download it first; see docs/data.md).

    python -m fwi_jax.train --config configs/curvevel_a.py --workdir runs/curvevel-a \
        --config.data.root=/data/curvevel-a
"""

from fwi_jax.config import dataset_config


def get_config(arg=None):
    return dataset_config("curvevel-a")
