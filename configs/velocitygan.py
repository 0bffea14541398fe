"""VelocityGAN: InversionNet as generator against a critic, WGAN-GP (the OpenFWI reference's recipe).

    python -m fwi_jax.train --config configs/velocitygan.py --workdir runs/vgan --config.data.root=/data/flatvel-a
    python -m fwi_jax.train --config configs/velocitygan.py:quickstart --workdir runs/vgan-quickstart

`:quickstart` trains on the quickstart's generated FlatVel-A-like data with its `small` generator
(the critic at the reference's widths); `:smoke` shrinks everything to seconds (tests).
"""

from fwi_jax.config import velocitygan_config


def get_config(arg=None):
    return velocitygan_config(arg)
