"""Full reference recipe on OpenFWI style-a (download it first; see docs/data.md).

    python -m fwi_jax.train --config configs/style_a.py --workdir runs/style-a \
        --config.data.root=/data/style-a
"""

from fwi_jax.config import dataset_config


def get_config(arg=None):
    return dataset_config("style-a")
