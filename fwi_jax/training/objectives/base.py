"""The base of every training objective (the loss the train step minimizes).

An objective is a value, not code inside the step: the step factory (`training.steps`) composes
it with the optimizer and the loop never branches on it. An objective is a subclass in its own
module of this package, built from the config by its ``from_config`` and registered by name in
the package's ``__init__``:

* ``loss(params, batch_stats, objective_state, batch, rng) -> (loss, (metrics, new batch_stats))`` is
  differentiated with respect to ``params`` (the network's parameters); ``objective_state`` is the
  objective's own state;
* ``init_state(rng)`` makes the objective's own state (e.g. a critic's parameters and optimizer
  state), carried in ``TrainState.objective_state`` and saved in every checkpoint;
* ``update_state(objective_state, params, batch_stats, batch, rng) -> (objective_state,
  batch_stats, metrics)`` advances that state once per step, before the network's update (e.g. one critic step; a
  train-mode forward of the network there also moves its BatchNorm statistics, as in PyTorch);
* ``update_every``: the network is updated on every n-th step only (a GAN's generator); on the
  others the step logs ``update_state``'s metrics, which must then include ``loss``;
* ``validation_loss(metrics)`` turns the validation metrics into the number the best checkpoint
  is chosen by.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Objective:
    """Base objective: no state of its own. Subclasses define `loss` and `validation_loss`."""

    model: nn.Module

    @property
    def update_every(self) -> int:
        return 1

    def init_state(self, rng: jax.Array) -> Any:
        del rng
        return {}

    def update_state(
        self, objective_state: Any, params: Any, batch_stats: Any, batch: dict, rng: jax.Array
    ) -> tuple[Any, Any, Metrics]:
        del params, batch, rng
        return objective_state, batch_stats, {}

    def loss(self, params: Any, batch_stats: Any, objective_state: Any, batch: dict, rng: jax.Array):
        raise NotImplementedError

    def validation_loss(self, val_metrics: dict[str, float]) -> float:
        raise NotImplementedError

    def predict_train(self, params: Any, batch_stats: Any, seismic: jax.Array) -> tuple[jax.Array, Any]:
        """The network in training mode: (prediction, new BatchNorm statistics)."""
        pred, updates = self.model.apply(
            {"params": params, "batch_stats": batch_stats}, seismic, train=True, mutable=["batch_stats"]
        )
        return pred, updates["batch_stats"]
