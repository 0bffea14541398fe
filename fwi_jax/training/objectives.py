"""Training objectives: the loss the train step minimizes, chosen by ``config.loss.objective``.

An objective is a value, not code inside the step: the step factory (`training.steps`) composes
it with the optimizer and the loop never branches on it. Adding one (adversarial, physics) means
a class here or in its own module, registered by name, plus a config value:

* ``loss(params, batch_stats, extra, batch, rng) -> (loss, (metrics, new batch_stats))`` is
  differentiated with respect to ``params`` (the network's parameters);
* ``init_extra(rng)`` makes the objective's own state (e.g. a critic's parameters and optimizer
  state), carried in ``TrainState.extra`` and saved in every checkpoint;
* ``update_extra(extra, params, batch_stats, batch, rng) -> (extra, batch_stats, metrics)``
  advances that state once per step, before the network's update (e.g. one critic step; a
  train-mode forward of the network there also moves its BatchNorm statistics, as in PyTorch);
* ``update_every``: the network is updated on every n-th step only (a GAN's generator); on the
  others the step logs ``update_extra``'s metrics, which must then include ``loss``;
* ``validation_loss(metrics)`` turns the validation metrics into the number the best checkpoint
  is chosen by.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from fwi_jax import metrics as metrics_lib
from fwi_jax.data.datasets import DatasetSpec
from fwi_jax.physics import Geometry, openfwi_geometry
from fwi_jax.training import physics_loss

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Objective:
    """Base objective: no extra state. Subclasses define `loss` and `validation_loss`."""

    model: nn.Module

    @property
    def update_every(self) -> int:
        return 1

    def init_extra(self, rng: jax.Array) -> Any:
        del rng
        return {}

    def update_extra(
        self, extra: Any, params: Any, batch_stats: Any, batch: dict, rng: jax.Array
    ) -> tuple[Any, Any, Metrics]:
        del params, batch, rng
        return extra, batch_stats, {}

    def loss(self, params: Any, batch_stats: Any, extra: Any, batch: dict, rng: jax.Array):
        raise NotImplementedError

    def validation_loss(self, val_metrics: dict[str, float]) -> float:
        raise NotImplementedError

    def predict_train(self, params: Any, batch_stats: Any, seismic: jax.Array) -> tuple[jax.Array, Any]:
        """The network in training mode: (prediction, new BatchNorm statistics)."""
        pred, updates = self.model.apply(
            {"params": params, "batch_stats": batch_stats}, seismic, train=True, mutable=["batch_stats"]
        )
        return pred, updates["batch_stats"]


@dataclasses.dataclass(frozen=True)
class Supervised(Objective):
    """The reference's loss: l1 * L1 + l2 * L2 between predicted and true normalized maps, plus
    ``physics`` times the waveform misfit of the prediction (`training.physics_loss`)."""

    l1: float = 1.0
    l2: float = 1.0
    physics: float = 0.0
    spec: DatasetSpec | None = None
    geometry: Geometry | None = None

    def loss(self, params, batch_stats, extra, batch, rng):
        del extra, rng
        pred, batch_stats = self.predict_train(params, batch_stats, batch["seismic"])
        loss, parts = metrics_lib.loss_fn(pred, batch["velocity"], self.l1, self.l2)
        if self.physics:
            misfit = physics_loss.waveform_misfit(pred, batch["seismic"], self.spec, self.geometry)
            loss, parts = loss + self.physics * misfit, {**parts, "physics": misfit}
        return loss, (parts, batch_stats)

    def validation_loss(self, val_metrics):
        if self.l1 == self.l2 == 0:  # unsupervised: the best checkpoint is still chosen by the labels
            return val_metrics["mae_norm"] + val_metrics["mse_norm"]
        return self.l1 * val_metrics["mae_norm"] + self.l2 * val_metrics["mse_norm"]


def _supervised(config: ml_collections.ConfigDict, model: nn.Module, spec: DatasetSpec) -> Objective:
    weight = float(config.loss.get("physics", 0.0))  # checkpoints from before the physics term have none
    if weight < 0:
        raise ValueError(f"loss.physics must be >= 0, got {weight}")
    geometry = None
    if weight:
        geometry = openfwi_geometry(config.loss.get("physics_layout", "released"))
        physics_loss.check_geometry(spec, geometry)
    return Supervised(
        model, l1=float(config.loss.l1), l2=float(config.loss.l2), physics=weight, spec=spec, geometry=geometry
    )


def _velocitygan(config: ml_collections.ConfigDict, model: nn.Module, spec: DatasetSpec) -> Objective:
    from fwi_jax.training.adversarial import VelocityGAN

    return VelocityGAN.from_config(config, model, spec)


ObjectiveFactory = Callable[[ml_collections.ConfigDict, nn.Module, DatasetSpec], Objective]
OBJECTIVES: dict[str, ObjectiveFactory] = {"supervised": _supervised, "velocitygan": _velocitygan}


def register(name: str, factory: ObjectiveFactory) -> None:
    """Make ``--config.loss.objective=name`` build ``factory(config, model, spec)``."""
    OBJECTIVES[name] = factory


def make_objective(config: ml_collections.ConfigDict, model: nn.Module, spec: DatasetSpec) -> Objective:
    name = config.loss.get("objective", "supervised")  # checkpoints from before objectives had none
    if name not in OBJECTIVES:
        raise ValueError(f"unknown loss.objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](config, model, spec)
