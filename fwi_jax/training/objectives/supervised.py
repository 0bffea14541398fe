"""The reference's supervised loss, with an optional physics (waveform misfit) term."""

from __future__ import annotations

import dataclasses

import ml_collections

from fwi_jax import metrics as metrics_lib
from fwi_jax.data.datasets import DatasetSpec
from fwi_jax.physics import Geometry, openfwi_geometry
from fwi_jax.training import physics_loss
from fwi_jax.training.objectives.base import Objective


@dataclasses.dataclass(frozen=True)
class Supervised(Objective):
    """The reference's loss: l1 * L1 + l2 * L2 between predicted and true normalized maps, plus
    ``physics`` times the waveform misfit of the prediction (`training.physics_loss`)."""

    l1: float = 1.0
    l2: float = 1.0
    physics: float = 0.0
    spec: DatasetSpec | None = None
    geometry: Geometry | None = None

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, model, spec: DatasetSpec) -> Supervised:
        weight = float(config.loss.physics)
        if weight < 0:
            raise ValueError(f"loss.physics must be >= 0, got {weight}")
        geometry = None
        if weight:
            geometry = openfwi_geometry(config.loss.physics_layout)
            physics_loss.check_geometry(spec, geometry)
        return cls(
            model, l1=float(config.loss.l1), l2=float(config.loss.l2), physics=weight, spec=spec, geometry=geometry
        )

    def loss(self, params, batch_stats, objective_state, batch, rng):
        del objective_state, rng
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
