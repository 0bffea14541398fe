"""Fine-tuning: the quickstart model (FlatVel-A-like data) on 256 generated CurveVel-A-like samples.

    python -m fwi_jax.train --config configs/quickstart.py --workdir runs/quickstart       # first, once
    python -m fwi_jax.train --config configs/finetune.py --workdir runs/finetune --config.init_from=runs/quickstart

320 steps at batch 8 (10 epochs; AdamW lr 5e-4 with a cosine decay, a fresh optimizer), validated
on 64 held-out samples after each epoch. First use generates the 320 samples (~15 s); the
training takes 1-2 minutes on a 2-core CPU. Add `--config.optim.freeze=encoder` to train the
decoder only; leave out `init_from` to train the same recipe from scratch. `:smoke` shrinks
everything to seconds (tests). Measured against both: README "Fine-tune pretrained weights".
"""

from fwi_jax.config import finetune_config


def get_config(arg=None):
    return finetune_config(arg)
