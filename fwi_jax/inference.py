"""A trained model from a workdir's checkpoint: config, normalization, state, batched prediction."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fwi_jax import parallel, trainer
from fwi_jax.checkpointing import Checkpointer, abstract_like
from fwi_jax.data.datasets import DatasetSpec, get_dataset


@dataclasses.dataclass
class Trained:
    """Everything needed to run a checkpoint: model, state on the mesh, config, dataset constants."""

    model: Any
    state: trainer.TrainState
    config: ml_collections.ConfigDict
    spec: DatasetSpec
    step: int
    label: str  # "best", "latest" or "step"
    workdir: Path
    mesh: Any

    @functools.cached_property
    def _predict(self):
        repl, batch = parallel.replicated(self.mesh), parallel.batch_sharded(self.mesh)
        fn = functools.partial(trainer.predict_step, model=self.model)
        return jax.jit(fn, in_shardings=(repl, batch), out_shardings=repl)

    def predict_normalized(self, seismic: np.ndarray) -> np.ndarray:
        """Normalized NHWC seismic (B, T, R, S) -> normalized velocity (B, H, W); B divisible by devices."""
        return np.asarray(self._predict(self.state, jnp.asarray(seismic)))[..., 0]


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
        config = ml_collections.ConfigDict({k: v for k, v in saved.items() if k != "normalization"})
        spec = spec_from_config(saved)
        mesh = mesh if mesh is not None else parallel.make_mesh()
        model = trainer.model_from_config(config, spec)
        tx = trainer.make_optimizer(config, 1)  # opt_state's structure does not depend on the schedule
        shapes = jax.eval_shape(functools.partial(trainer.init_state, model, tx, config.seed, spec))
        state, data_pos, _ = ckpt.restore(abstract_like(shapes, parallel.replicated(mesh)), step, best=best)
    finally:
        ckpt.close()
    return Trained(model, state, config, spec, int(state.step), label, workdir, mesh)
