"""VelocityGAN's objective: InversionNet as generator against a convolutional critic, trained as a
Wasserstein GAN with gradient penalty, as in the OpenFWI reference code (github.com/lanl/OpenFWI)
and its paper (Deng et al., "OpenFWI", NeurIPS 2022 Datasets and Benchmarks).

Each step first updates the critic (its parameters, BatchNorm statistics and AdamW state live in
``TrainState.objective_state``):

    critic loss = -mean(D(real)) + mean(D(fake)) + gp_weight * mean((||grad_x D(x_hat)|| - 1)^2)

with fake = G(seismic) (no gradient to G) and x_hat = a real + (1 - a) fake, a ~ U(0, 1) per
sample. Every ``n_critic``-th step the generator is then updated with

    generator loss = l1 * L1 + l2 * L2 + adversarial * (-mean(D(G(seismic))))

Both networks run in training mode throughout (batch statistics), as the reference does. The
metrics of every step describe the fake of its critic update (``loss``, ``l1``, ``l2``, ``adv``:
the generator loss that fake would have, under the updated critic) and the critic (``critic_loss``,
``wasserstein`` = mean D(real) - mean D(fake), ``gp``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from fwi_jax import metrics as metrics_lib
from fwi_jax.data.datasets import DatasetSpec
from fwi_jax.models.velocitygan import Critic
from fwi_jax.training.objectives.base import Objective


def gradient_penalty(score_fn: Callable, real: jax.Array, fake: jax.Array, rng: jax.Array) -> tuple[jax.Array, Any]:
    """(mean over samples of (||d sum(scores) / d x_hat_i|| - 1)^2, aux) at random interpolates x_hat.

    ``score_fn(x) -> (scores, aux)``; the gradient is of the summed scores, as autograd.grad with
    ones does in the reference (with BatchNorm in training mode a sample's score also depends on
    the others).
    """
    alpha = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    x_hat = alpha * real + (1 - alpha) * fake
    grads, aux = jax.grad(lambda x: (lambda s, a: (jnp.sum(s), a))(*score_fn(x)), has_aux=True)(x_hat)
    norms = jnp.sqrt(jnp.sum(grads**2, axis=tuple(range(1, grads.ndim))))
    return jnp.mean((norms - 1.0) ** 2), aux


@dataclasses.dataclass(frozen=True)
class VelocityGAN(Objective):
    critic: Critic = dataclasses.field(default_factory=Critic)
    critic_tx: optax.GradientTransformation | None = None
    velocity_shape: tuple[int, int, int] = (70, 70, 1)
    l1: float = 100.0
    l2: float = 100.0
    adversarial: float = 1.0
    gp_weight: float = 10.0
    n_critic: int = 5

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, model, spec: DatasetSpec) -> VelocityGAN:
        g = config.gan
        if g.n_critic < 1:
            raise ValueError(f"gan.n_critic must be >= 1, got {g.n_critic}")
        critic_tx = optax.adamw(g.lr, b1=g.b1, b2=g.b2, eps=g.eps, weight_decay=g.weight_decay)
        return cls(
            model,
            critic=Critic(tuple(int(d) for d in g.critic_dims)),
            critic_tx=critic_tx,
            velocity_shape=(spec.depth, spec.width, 1),
            l1=float(config.loss.l1),
            l2=float(config.loss.l2),
            adversarial=float(g.adversarial),
            gp_weight=float(g.gp_weight),
            n_critic=int(g.n_critic),
        )

    @property
    def update_every(self) -> int:
        return self.n_critic

    def init_state(self, rng: jax.Array) -> dict:
        # An "rbg" key seeded from one draw of rng: XLA:CPU compiles threefry parameter draws slowly.
        key = jax.random.key(jax.random.randint(rng, (), 0, 2**31 - 1), impl="rbg")
        variables = self.critic.init(key, jnp.zeros((1, *self.velocity_shape)), train=False)
        params = variables["params"]
        return {"params": params, "batch_stats": variables["batch_stats"], "opt_state": self.critic_tx.init(params)}

    def scores(self, params: Any, batch_stats: Any, velocity: jax.Array) -> tuple[jax.Array, Any]:
        """Critic scores (B, n) in training mode, and its new BatchNorm statistics."""
        out, updates = self.critic.apply(
            {"params": params, "batch_stats": batch_stats}, velocity, train=True, mutable=["batch_stats"]
        )
        return out, updates["batch_stats"]

    def critic_loss(self, params, batch_stats, real, fake, rng):
        s_real, batch_stats = self.scores(params, batch_stats, real)
        s_fake, batch_stats = self.scores(params, batch_stats, fake)
        gp, batch_stats = gradient_penalty(lambda x: self.scores(params, batch_stats, x), real, fake, rng)
        wasserstein = jnp.mean(s_real) - jnp.mean(s_fake)
        loss = -wasserstein + self.gp_weight * gp
        return loss, ({"critic_loss": loss, "wasserstein": wasserstein, "gp": gp}, batch_stats)

    def generator_loss(self, pred, target, critic_state) -> tuple[jax.Array, dict]:
        supervised, parts = metrics_lib.loss_fn(pred, target, self.l1, self.l2)
        # The critic's BatchNorm statistics move in its own updates only.
        scores, _ = self.scores(critic_state["params"], critic_state["batch_stats"], pred)
        adv = -jnp.mean(scores)
        return supervised + self.adversarial * adv, {**parts, "adv": adv}

    def update_state(self, critic_state, params, batch_stats, batch, rng):
        fake, batch_stats = self.predict_train(params, batch_stats, batch["seismic"])
        fake = jax.lax.stop_gradient(fake)
        grad_fn = jax.value_and_grad(self.critic_loss, has_aux=True)
        (_, (critic_metrics, critic_stats)), grads = grad_fn(
            critic_state["params"], critic_state["batch_stats"], batch["velocity"], fake, rng
        )
        updates, opt_state = self.critic_tx.update(grads, critic_state["opt_state"], critic_state["params"])
        critic_state = {
            "params": optax.apply_updates(critic_state["params"], updates),
            "batch_stats": critic_stats,
            "opt_state": opt_state,
        }
        loss, parts = self.generator_loss(fake, batch["velocity"], critic_state)
        return critic_state, batch_stats, {"loss": loss, **parts, **critic_metrics}

    def loss(self, params, batch_stats, critic_state, batch, rng):
        del rng
        pred, batch_stats = self.predict_train(params, batch_stats, batch["seismic"])
        loss, parts = self.generator_loss(pred, batch["velocity"], critic_state)
        return loss, (parts, batch_stats)

    def validation_loss(self, val_metrics):
        return self.l1 * val_metrics["mae_norm"] + self.l2 * val_metrics["mse_norm"]
