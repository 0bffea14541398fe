"""A trained model from a workdir's checkpoint: config, normalization, state, batched prediction."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import ml_collections
import numpy as np

from fwi_jax import parallel
from fwi_jax.checkpointing import Checkpointer
from fwi_jax.config import saved_config
from fwi_jax.data.datasets import DatasetSpec, get_dataset
from fwi_jax.training.steps import Steps, TrainState, make_steps, restore_or_init


@dataclasses.dataclass
class Trained:
    """Everything needed to run a checkpoint: its steps on the mesh, state, config, dataset constants."""

    steps: Steps
    state: TrainState
    config: ml_collections.ConfigDict
    step: int
    label: str  # "best", "latest" or "step"
    workdir: Path

    @property
    def spec(self) -> DatasetSpec:
        return self.steps.spec

    @property
    def mesh(self):
        return self.steps.mesh

    def predict_normalized(self, seismic: np.ndarray) -> np.ndarray:
        """Normalized NHWC seismic (B, T, R, S) -> normalized velocity (B, H, W); B divisible by devices."""
        return np.asarray(self.steps.predict(self.state, jnp.asarray(seismic)))[..., 0]


def spec_from_config(saved: dict) -> DatasetSpec:
    """Dataset constants stored with the checkpoint (older checkpoints: the registry's)."""
    spec = get_dataset(saved["data"]["dataset"])
    norm = saved.get("normalization")
    if norm:
        spec = dataclasses.replace(spec, **{k: float(v) for k, v in norm.items()})
    return spec


def parse_checkpoint(which: str) -> tuple[int | None, bool, str]:
    """'best' | 'latest' | STEP -> (step, best?, label)."""
    if which == "best":
        return None, True, "best"
    if which == "latest":
        return None, False, "latest"
    if which.isdigit():
        return int(which), False, "step"
    raise ValueError(f"--checkpoint must be 'best', 'latest' or a step number, got {which!r}")


def load(workdir: str | Path, checkpoint: str = "best", mesh=None) -> Trained:
    """Restore a checkpoint of ``workdir`` onto ``mesh`` (default: all devices), with its own config."""
    workdir = Path(workdir).expanduser().absolute()
    if not (workdir / "checkpoints").is_dir() and not (workdir / "best").is_dir():
        raise FileNotFoundError(f"{workdir} holds no checkpoints: train there first, or pass the right --workdir")
    step, best, label = parse_checkpoint(checkpoint)
    ckpt = Checkpointer(workdir, async_save=False)
    try:
        if best and ckpt.best_step() is None:  # runs without validation have no best export
            best, label = False, "latest"
        saved = ckpt.read_config(step, best=best)
        config = saved_config(saved)
        mesh = mesh if mesh is not None else parallel.make_mesh()
        steps = make_steps(config, spec_from_config(saved), mesh)
        state, _ = restore_or_init(ckpt, steps, step=step, best=best, init=False)
    finally:
        ckpt.close()
    return Trained(steps, state, config, int(state.step), label, workdir)
