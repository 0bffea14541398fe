"""Reference weights into a fwi_jax checkpoint (import) and out of one (export)."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from fwi_jax import inference, parallel
from fwi_jax.checkpointing import Checkpointer, config_to_json
from fwi_jax.config import dataset_config
from fwi_jax.data.datasets import get_dataset
from fwi_jax.torch_port.keymap import state_dict_to_variables, variables_to_state_dict
from fwi_jax.training.steps import make_steps


def import_state_dict(
    state_dict: dict, dataset: str, workdir: str | os.PathLike, dims: str = "openfwi", seed: int = 0
) -> Path:
    """Write a fwi_jax checkpoint (step 0, also exported as best) holding the reference weights."""
    workdir = Path(workdir).expanduser().absolute()
    if (workdir / "checkpoints").exists() or (workdir / "best").exists():
        raise FileExistsError(f"{workdir} already holds checkpoints; import into a new --workdir")
    config = dataset_config(dataset)
    config.model.dims = dims
    config.seed = seed
    spec = get_dataset(dataset)
    steps = make_steps(config, spec, parallel.make_mesh())
    shapes = steps.abstract_state()
    variables = state_dict_to_variables(state_dict, {"params": shapes.params, "batch_stats": shapes.batch_stats})

    def with_weights(state, variables):
        params = variables["params"]
        return state.replace(params=params, batch_stats=variables["batch_stats"], opt_state=steps.tx.init(params))

    state = jax.jit(with_weights, out_shardings=parallel.replicated(steps.mesh))(steps.init(), variables)
    saved = {**config_to_json(config), "normalization": spec.normalization(), "imported_from": "pytorch"}
    ckpt = Checkpointer(workdir, async_save=False)
    try:
        ckpt.save(0, state, {"next_step": 0}, saved, force=True)
        ckpt.save_best(0, state, {"next_step": 0}, saved, float("inf"))
        ckpt.wait()
    finally:
        ckpt.close()
    return workdir


def export_state_dict(workdir: str | os.PathLike, checkpoint: str = "best") -> dict[str, np.ndarray]:
    """The reference's state_dict of a workdir's checkpoint (num_batches_tracked = the step)."""
    trained = inference.load(workdir, checkpoint)
    variables = jax.device_get({"params": trained.state.params, "batch_stats": trained.state.batch_stats})
    return variables_to_state_dict(variables, trained.step)
