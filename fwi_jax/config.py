"""Configuration builders (the files in configs/ call these) and the one place defaults are
applied: `saved_config` fills in fields a checkpoint's config predates, so no reader of a config
needs ``.get(key, default)``."""

from __future__ import annotations

import json
from pathlib import Path

import ml_collections

from fwi_jax.data.datasets import get_dataset


def default_config() -> ml_collections.ConfigDict:
    """The OpenFWI reference recipe for InversionNet (train.py defaults), on real OpenFWI data."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.init_from = ""  # fine-tuning: WORKDIR[@best|latest|STEP] or a .pth (fwi_jax.training.finetune)
    c.model = ml_collections.ConfigDict(
        dict(
            name="inversionnet",
            dims="openfwi",  # preset name (openfwi / narrow / small / tiny) or "d1,d2,d3,d4,d5"
            compute_dtype="float32",  # float32 | bfloat16 (params, BatchNorm and loss stay float32)
            conv_impl="auto",  # auto (einsum forms on CPU) | xla | einsum; same parameters either way
            tune_convs=False,  # CPU, conv_impl=auto: measure each conv's forms before compiling (models.tune)
        )
    )
    c.data = ml_collections.ConfigDict(
        dict(
            # openfwi: .npy pairs listed in split files (see python -m fwi_jax.data.prepare) |
            # tfds: openfwi/<dataset> built by python -m fwi_jax.data.tfds_openfwi | generated: made by fwi_jax
            source="openfwi",
            dataset="flatvel-a",  # normalization constants (OpenFWI -ds)
            root="",  # folder the split files' relative paths start from
            train_split="train.txt",  # relative to root, or absolute (OpenFWI -t)
            val_split="val.txt",  # (OpenFWI -v)
            # source=generated: family, size and solver of the cached synthetic dataset
            family="flatvel-a",
            num_samples=0,
            file_size=500,
            val_files=1,
            mode="exact",
            generation_seed=0,
            cache_dir="",  # "": fwi_jax.paths.dataset_cache() (~/.cache/fwi_jax/datasets; $FWI_JAX_CACHE)
            tfds_data_dir="",  # source=tfds: TFDS data_dir (default ~/tensorflow_datasets)
            num_threads=4,  # grain read threads
            num_workers=0,  # grain worker processes (0: threads only)
            # host: read each batch from disk (grain); device: load the training split once onto the
            # devices, sharded, and gather batches there (fwi_jax.data.device)
            placement="host",
            storage_dtype="float32",  # placement=device: float32 | bfloat16
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            lr=1e-4,  # OpenFWI -lr (global batch; the reference multiplies by its GPU count)
            weight_decay=1e-4,  # OpenFWI -wd, applied to all parameters as torch AdamW
            freeze="none",  # none | encoder | decoder | module path prefixes (encoder/convblock1,...): no update
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            warmup_epochs=0,  # OpenFWI --lr-warmup-epochs: linear per step from warmup_factor
            warmup_factor=1e-5,
            decay="step",  # step: x gamma at each milestone (the reference) | cosine: half cosine to 0
            milestones=(),  # epochs at which lr *= gamma (OpenFWI --lr-milestones)
            gamma=0.1,  # OpenFWI --lr-gamma
        )
    )
    c.loss = ml_collections.ConfigDict(
        dict(
            objective="supervised",  # the training objective (fwi_jax.training.objectives)
            l1=1.0,  # OpenFWI -g1v
            l2=1.0,  # OpenFWI -g2v
            physics=0.0,  # weight of the waveform misfit of the prediction (training.physics_loss)
            physics_layout="released",  # acquisition columns the data were made with: released | shifted
        )
    )
    c.gan = _gan_defaults()  # loss.objective=velocitygan (configs/velocitygan.py)
    c.batch_size = 256  # global (OpenFWI -b)
    c.eval_batch_size = 0  # 0: batch_size
    c.num_epochs = 120  # OpenFWI -eb 40 x -nb 3
    c.num_train_steps = -1  # > 0 overrides num_epochs
    c.log_every_steps = 50
    c.eval_every_steps = -1  # -1: every epoch (as the reference)
    c.checkpoint_every_steps = 500  # a new best (evaluation) is kept on the devices and written with the next one
    c.keep_checkpoints = 3
    c.async_checkpoints = True
    c.progress = True
    c.tensorboard = True
    c.num_plot_samples = 4
    # Persistent XLA cache, set by `python -m fwi_jax.train`: "default" (paths.compilation_cache), a folder, "" (off)
    c.compilation_cache = "default"
    return c


def _gan_defaults() -> ml_collections.ConfigDict:
    """VelocityGAN's settings (OpenFWI section 9): critic widths, schedule, penalty, the critic's AdamW."""
    return ml_collections.ConfigDict(
        dict(
            critic_dims=(32, 64, 128, 256),
            n_critic=5,  # generator updated every n_critic-th step
            gp_weight=10.0,  # WGAN-GP gradient-penalty weight
            adversarial=1.0,  # weight of -mean(D(G(x))) in the generator loss
            lr=1e-4,  # the critic's AdamW
            b1=0.0,
            b2=0.9,
            eps=1e-8,
            weight_decay=1e-4,
        )
    )


def dataset_config(dataset: str) -> ml_collections.ConfigDict:
    """Full reference recipe on one downloaded OpenFWI dataset."""
    c = default_config()
    c.data.dataset = get_dataset(dataset).name
    return c


def quickstart_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The `small` InversionNet (widths 8..128) on a generated FlatVel-A-like set: minutes on a laptop CPU.

    The recipe was chosen by measurement (docs/results.md): the fast solver makes the data in ~30 s
    instead of 3.5 min, and the time saved buys steps; batch 8 makes twice the updates of batch 16 at
    the same samples/s, and a cosine decay to 0 ends higher than one x0.1 drop.
    ``arg="smoke"`` shrinks everything for tests (seconds).
    """
    c = default_config()
    c.data.source = "generated"
    c.data.dataset = "flatvel-a"
    c.data.family = "flatvel-a"
    c.data.num_samples = 448
    c.data.file_size = 64
    c.data.val_files = 1  # 384 train / 64 val
    c.data.mode = "fast"
    c.model.dims = "small"
    c.optim.lr = 2e-3
    c.optim.decay = "cosine"
    c.batch_size = 8
    c.num_epochs = 45
    c.log_every_steps = 12
    c.checkpoint_every_steps = 240
    if arg == "smoke":
        c.data.num_samples = 24
        c.data.file_size = 8
        c.data.val_files = 1
        c.model.dims = "tiny"
        c.optim.lr = 1e-3
        c.optim.decay = "step"
        c.num_epochs = 2
        c.log_every_steps = 1
        c.checkpoint_every_steps = 2
    elif arg:
        raise ValueError(f"unknown quickstart variant {arg!r}; use 'smoke' or nothing")
    return c


def velocitygan_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """VelocityGAN (InversionNet generator + critic, WGAN-GP), the reference's recipe on real data.

    ``arg``: None (the reference: batch 64, 500 epochs, generator loss 100 L1 + 100 L2 + 1 adversarial,
    AdamW betas (0, 0.9) lr 1e-4 wd 1e-4 for both networks), "quickstart" (the quickstart's data and
    model) or "smoke" (seconds, for tests).
    """
    if arg in ("quickstart", "smoke"):
        c = quickstart_config(None if arg == "quickstart" else "smoke")
        if arg == "quickstart":  # the recipe its docs/results.md numbers were measured with
            c.data.mode, c.batch_size, c.num_epochs = "exact", 16, 16
            c.optim.update(lr=1e-3, decay="step")
    elif arg:
        raise ValueError(f"unknown velocitygan variant {arg!r}; use 'quickstart', 'smoke' or nothing")
    else:
        c = default_config()
        c.batch_size = 64
        c.num_epochs = 500
    c.loss.objective = "velocitygan"
    c.loss.l1, c.loss.l2 = 100.0, 100.0
    c.optim.b1, c.optim.b2 = 0.0, 0.9
    if arg != "smoke":
        c.optim.milestones = ()  # the generator steps every n_critic-th step: no epoch milestones
    if arg == "smoke":
        c.gan.critic_dims = (4, 8, 8, 16)
        c.gan.n_critic = 2
    return c


def finetune_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Fine-tune the quickstart model on 256 generated CurveVel-A-like samples (64 more held out).

    ``--config.init_from`` names the pretrained source (``runs/quickstart``); without it the same
    recipe trains from scratch (the baseline of docs/training.md#fine-tuning; both measured by
    benchmarks/finetune.py). ``arg="smoke"``: the quickstart's smoke sizes (tests).
    """
    if arg not in (None, "smoke"):
        raise ValueError(f"unknown finetune variant {arg!r}; use 'smoke' or nothing")
    c = quickstart_config(arg)
    c.data.dataset = c.data.family = "curvevel-a"
    c.data.num_samples = 24 if arg else 320
    c.optim.lr = 1e-3 if arg else 5e-4
    c.optim.decay = "cosine"
    c.num_epochs = -1
    c.num_train_steps = 4 if arg else 320
    c.log_every_steps = 1 if arg else 16
    c.checkpoint_every_steps = 2 if arg else 160
    return c


# Config fields that must match to resume from a checkpoint.
RESUME_KEYS = (
    "model",
    "data.dataset",
    "data.source",
    "data.family",
    "data.mode",
    "seed",
    "batch_size",
    "loss.objective",
    "optim.freeze",  # the optimizer state's structure
)


def config_to_json(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON values (what a checkpoint stores)."""
    return json.loads(config.to_json_best_effort())


def saved_config(saved: dict) -> ml_collections.ConfigDict:
    """A checkpoint's config as a ConfigDict; fields added since it was written take today's defaults."""

    def merge(default: dict, old: dict) -> dict:
        out = dict(default)
        for k, v in old.items():
            out[k] = merge(default[k], v) if isinstance(v, dict) and isinstance(default.get(k), dict) else v
        return out

    fields = {k: v for k, v in saved.items() if k not in ("normalization", "imported_from")}
    return ml_collections.ConfigDict(merge(config_to_json(default_config()), fields))


def check_resume_compatible(saved: dict, config: ml_collections.ConfigDict, ckpt_dir: Path) -> None:
    """Raise naming every RESUME_KEYS field that differs between a checkpoint's config and ``config``."""
    old, current = config_to_json(saved_config(saved)), config_to_json(config)
    diffs = []
    for key in RESUME_KEYS:
        a, b = old, current
        for part in key.split("."):
            a, b = (a or {}).get(part), (b or {}).get(part)
        if a != b:
            diffs.append(f"{key}: checkpoint {a!r} vs now {b!r}")
    if diffs:
        raise ValueError(
            f"cannot resume from {ckpt_dir}: the config changed ({'; '.join(diffs)}). "
            "Restore those settings, or use a new --workdir to start a fresh run."
        )
