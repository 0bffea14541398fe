"""Reference weights into a fwi_jax checkpoint (import) and out of one (export)."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from fwi_jax import inference, parallel
from fwi_jax.checkpointing import Checkpointer
from fwi_jax.config import config_to_json, dataset_config, velocitygan_config
from fwi_jax.data.datasets import get_dataset
from fwi_jax.torch_port.keymap import critic_key_map, state_dict_to_variables, variables_to_state_dict
from fwi_jax.training.steps import make_steps


def import_state_dict(
    state_dict: dict,
    dataset: str,
    workdir: str | os.PathLike,
    dims: str = "openfwi",
    seed: int = 0,
    critic_state_dict: dict | None = None,
) -> Path:
    """Write a fwi_jax checkpoint (step 0, also exported as best) holding the reference weights:
    an InversionNet, or with ``critic_state_dict`` a VelocityGAN (generator + critic) workdir."""
    workdir = Path(workdir).expanduser().absolute()
    if (workdir / "checkpoints").exists() or (workdir / "best").exists():
        raise FileExistsError(f"{workdir} already holds checkpoints; import into a new --workdir")
    config = dataset_config(dataset) if critic_state_dict is None else velocitygan_config()
    config.data.dataset = get_dataset(dataset).name
    config.model.dims = dims
    config.seed = seed
    spec = get_dataset(dataset)
    steps = make_steps(config, spec, parallel.make_mesh())
    shapes = steps.abstract_state()
    variables = state_dict_to_variables(state_dict, {"params": shapes.params, "batch_stats": shapes.batch_stats})
    critic = None
    if critic_state_dict is not None:
        expected = {"params": shapes.objective_state["params"], "batch_stats": shapes.objective_state["batch_stats"]}
        critic = state_dict_to_variables(critic_state_dict, expected, critic_key_map())

    def with_weights(state, variables, critic):
        params = variables["params"]
        state = state.replace(params=params, batch_stats=variables["batch_stats"], opt_state=steps.tx.init(params))
        if critic is not None:
            opt_state = steps.objective.critic_tx.init(critic["params"])
            state = state.replace(objective_state={**critic, "opt_state": opt_state})
        return state

    state = jax.jit(with_weights, out_shardings=parallel.replicated(steps.mesh))(steps.init(), variables, critic)
    saved = {**config_to_json(config), "normalization": spec.normalization(), "imported_from": "pytorch"}
    ckpt = Checkpointer(workdir, async_save=False)
    try:
        ckpt.save(0, state, {"next_step": 0}, saved, force=True)
        ckpt.save_best(0, state, {"next_step": 0}, saved, float("inf"))
        ckpt.wait()
    finally:
        ckpt.close()
    return workdir


def export_state_dict(
    workdir: str | os.PathLike, checkpoint: str = "best", critic: bool = False
) -> dict[str, np.ndarray]:
    """The reference's state_dict of a workdir's checkpoint (num_batches_tracked = the step): the
    InversionNet (a VelocityGAN's generator), or with ``critic`` the VelocityGAN critic."""
    trained = inference.load(workdir, checkpoint)
    if not critic:
        variables = jax.device_get({"params": trained.state.params, "batch_stats": trained.state.batch_stats})
        return variables_to_state_dict(variables, trained.step)
    if "params" not in trained.state.objective_state:
        raise ValueError(f"{workdir} was not trained with loss.objective=velocitygan: it holds no critic")
    variables = jax.device_get({k: trained.state.objective_state[k] for k in ("params", "batch_stats")})
    return variables_to_state_dict(variables, trained.step, critic_key_map())
