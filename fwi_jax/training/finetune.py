"""Fine-tuning: a new run's first state from pretrained weights (``--config.init_from=SOURCE``).

SOURCE is a workdir (``WORKDIR``, ``WORKDIR@best|latest|STEP``; default best) or a reference ``.pth``
(through the weight port: a bare state_dict or the reference's ``{"model": ...}`` checkpoint). The
run starts at step 0 with the source's parameters and BatchNorm statistics, a fresh optimizer state
and schedule, and its own config (dataset, normalization, recipe). A VelocityGAN source gives its
generator, and its critic when the new run is VelocityGAN too; any other source starts a
VelocityGAN run's critic fresh. Only a run without checkpoints of its own reads the source: a
resumed fine-tuning run resumes from its checkpoints.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fwi_jax import inference, parallel
from fwi_jax.torch_port.keymap import state_dict_to_variables
from fwi_jax.torch_port.pth import load_pth
from fwi_jax.training.freeze import path_name
from fwi_jax.training.steps import Steps, TrainState


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """What a source holds: the network's variables, a critic's (VelocityGAN), its dataset constants."""

    label: str
    variables: dict  # {"params", "batch_stats"}
    critic: dict | None = None  # {"params", "batch_stats"}
    normalization: dict | None = None  # None: unknown (a .pth)


def parse_source(source: str) -> tuple[Path, str | None]:
    """(path, checkpoint): checkpoint None for a .pth, else best | latest | STEP."""
    path = Path(source).expanduser()
    if source.endswith(".pth") or path.is_file():
        return path, None
    base, at, which = source.rpartition("@")
    if at and which and "/" not in which:
        inference.parse_checkpoint(which)  # a bad one: one error naming the choices
        return Path(base).expanduser(), which
    return path, "best"


def load(source: str, steps: Steps) -> Pretrained:
    """The source's weights, checked against the new run's model (every mismatching layer named)."""
    path, which = parse_source(source)
    shapes = steps.abstract_state()
    expected = {"params": shapes.params, "batch_stats": shapes.batch_stats}
    if which is None:
        try:
            variables = state_dict_to_variables(load_pth(path), expected)
        except ValueError as e:
            raise ValueError(f"init_from={source}: {e}") from None
        return Pretrained(f"{path}", variables)
    if not path.is_dir():
        raise FileNotFoundError(f"init_from={source}: {path} is neither a workdir nor a .pth file")
    trained = inference.load(path, which)
    variables = jax.device_get({"params": trained.state.params, "batch_stats": trained.state.batch_stats})
    check_shapes(variables, expected, source)
    critic = None
    if "params" in trained.state.objective_state and "params" in shapes.objective_state:
        critic = jax.device_get({k: trained.state.objective_state[k] for k in ("params", "batch_stats")})
        wanted = {k: shapes.objective_state[k] for k in ("params", "batch_stats")}
        check_shapes(critic, wanted, f"{source} (critic)")
    label = f"{path}@{trained.label if trained.label != 'step' else trained.step} (step {trained.step})"
    return Pretrained(label, variables, critic, trained.spec.normalization())


def check_shapes(source: dict, expected: dict, name: str) -> None:
    """One error listing every layer whose shape differs, or that only one side has."""
    got = {path_name(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(source)}
    want = {path_name(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    rows = [f"{p}: source {got[p]}, expected {want[p]}" for p in sorted(got.keys() & want.keys()) if got[p] != want[p]]
    rows += [f"{p}: source {got[p]}, not in this model" for p in sorted(got.keys() - want.keys())]
    rows += [f"{p}: not in the source, expected {want[p]}" for p in sorted(want.keys() - got.keys())]
    if rows:
        raise ValueError(
            f"init_from={name} does not fit this run's model ({len(rows)} layer(s); check model.dims, model.name "
            "and the dataset's geometry):\n  " + "\n  ".join(rows)
        )


def warn_normalization(pretrained: Pretrained, normalization: dict) -> None:
    """The source was trained with other dataset constants: what differs, as a warning."""
    if pretrained.normalization is None:
        return
    diffs = [
        f"{k} {pretrained.normalization[k]:g} -> {v:g}"
        for k, v in normalization.items()
        if k in pretrained.normalization and not np.isclose(pretrained.normalization[k], v)
    ]
    if diffs:
        warnings.warn(
            f"init_from={pretrained.label} was trained with other normalization constants ({', '.join(diffs)}): "
            "its first predictions on this data are off until it adapts",
            stacklevel=2,
        )


def initial_state(steps: Steps, pretrained: Pretrained) -> TrainState:
    """Step 0 of the new run: the source's weights, a fresh optimizer state (and critic, unless given)."""

    def start(state: TrainState, variables: dict, critic: Any) -> TrainState:
        params = variables["params"]
        state = state.replace(params=params, batch_stats=variables["batch_stats"], opt_state=steps.tx.init(params))
        if critic is not None:
            opt_state = steps.objective.critic_tx.init(critic["params"])
            state = state.replace(objective_state={**state.objective_state, **critic, "opt_state": opt_state})
        return state

    start_jit = jax.jit(start, out_shardings=parallel.replicated(steps.mesh))
    return start_jit(steps.init(), pretrained.variables, pretrained.critic)
