"""Training objectives by name: ``--config.loss.objective=NAME`` builds ``OBJECTIVES[NAME](config, model, spec)``.

Each objective lives in its own module of this package and imports only `base`; this registry is
the one place that knows them all. `register` adds one from outside the package (a research
objective, a test).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import ml_collections

from fwi_jax.data.datasets import DatasetSpec
from fwi_jax.training.objectives.base import Metrics, Objective
from fwi_jax.training.objectives.supervised import Supervised
from fwi_jax.training.objectives.velocitygan import VelocityGAN, gradient_penalty

ObjectiveFactory = Callable[[ml_collections.ConfigDict, nn.Module, DatasetSpec], Objective]
OBJECTIVES: dict[str, ObjectiveFactory] = {"supervised": Supervised.from_config, "velocitygan": VelocityGAN.from_config}


_BUILT_IN = ("supervised", "velocitygan")


def register(name: str, factory: ObjectiveFactory) -> None:
    """Make ``--config.loss.objective=name`` build ``factory(config, model, spec)``. Registering a name again
    replaces it (a notebook cell run twice); the built-in names cannot be replaced."""
    if name in _BUILT_IN:
        raise ValueError(f"objective {name!r} is built in; register yours under another name")
    OBJECTIVES[name] = factory


def unregister(name: str) -> None:
    """Remove an objective added with `register` (the built-in ones stay)."""
    if name in _BUILT_IN:
        raise ValueError(f"objective {name!r} is built in and cannot be removed")
    OBJECTIVES.pop(name, None)


def make_objective(config: ml_collections.ConfigDict, model: nn.Module, spec: DatasetSpec) -> Objective:
    name = config.loss.objective
    if name not in OBJECTIVES:
        raise ValueError(f"unknown loss.objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](config, model, spec)


__all__ = [
    "OBJECTIVES",
    "Metrics",
    "Objective",
    "ObjectiveFactory",
    "Supervised",
    "VelocityGAN",
    "gradient_penalty",
    "make_objective",
    "register",
    "unregister",
]
