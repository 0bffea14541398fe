"""Full reference recipe on OpenFWI style-b (download it first; see docs/data.md).

    python -m fwi_jax.train --config configs/style_b.py --workdir runs/style-b \
        --config.data.root=/data/style-b
"""

from fwi_jax.config import dataset_config


def get_config(arg=None):
    return dataset_config("style-b")
