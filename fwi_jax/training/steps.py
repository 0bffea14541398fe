"""TrainState, optimizer, and `make_steps`: the one factory of jitted, sharded train / eval / predict
steps; and `restore_or_init`, the one way training, inference and the weight port get a state.

Every caller that runs the model (the training loop, inference, the weight port, tests and
benchmarks) builds it here, so a change to the step is made once.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from jax.sharding import Mesh

from fwi_jax import metrics as metrics_lib
from fwi_jax import parallel
from fwi_jax.checkpointing import Checkpointer
from fwi_jax.config import check_resume_compatible
from fwi_jax.data.datasets import DatasetSpec
from fwi_jax.data.transforms import prepare_batch
from fwi_jax.models import build_model
from fwi_jax.training import freeze
from fwi_jax.training.objectives import Objective, make_objective

# fold_in stream of the objective's initialization: above any step number, so no step key repeats it.
_OBJECTIVE_STREAM = 2**31 - 1


class TrainState(struct.PyTreeNode):
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step)
    objective_state: Any  # e.g. VelocityGAN's critic; {} for the supervised loss


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """The run's length: num_train_steps when set, else num_epochs whole epochs."""
    return config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * steps_per_epoch


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """Per-step linear warmup from warmup_factor, then x gamma at each milestone epoch (decay "step",
    the reference's) or a half cosine from lr to 0 over the remaining steps (decay "cosine")."""
    o = config.optim
    decay = o.decay
    if decay not in ("step", "cosine"):
        raise ValueError(f"optim.decay must be 'step' or 'cosine', got {decay!r}")
    if decay == "cosine" and o.milestones:
        raise ValueError("optim.decay='cosine' ignores milestones; set optim.milestones=() or use decay 'step'")
    warmup = int(o.warmup_epochs * steps_per_epoch)
    total = total_steps(config, steps_per_epoch)
    bounds = jnp.asarray(sorted(int(m * steps_per_epoch) for m in o.milestones) or [2**30], jnp.int32)

    def schedule(step):
        step = jnp.asarray(step)
        alpha = jnp.clip(step / max(warmup, 1), 0.0, 1.0) if warmup else 1.0
        factor = o.warmup_factor * (1 - alpha) + alpha
        if decay == "cosine":
            t = jnp.clip((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
            return o.lr * factor * 0.5 * (1 + jnp.cos(jnp.pi * t))
        decays = jnp.sum(step >= bounds) if o.milestones else 0
        return o.lr * factor * o.gamma**decays

    return schedule


def make_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    """AdamW (torch's semantics); parameters under ``optim.freeze`` get no update and no decay."""
    o = config.optim
    tx = optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay)
    return freeze.masked_optimizer(tx, freeze.prefixes(o.freeze))


def model_from_config(config: ml_collections.ConfigDict, spec: DatasetSpec) -> nn.Module:
    m = config.model
    return build_model(m.name, m.dims, (spec.depth, spec.width), m.compute_dtype, m.conv_impl)


def input_shape(spec: DatasetSpec) -> tuple[int, int, int]:
    """One NHWC seismic sample: (time samples, receivers, shots)."""
    return (spec.time_samples, spec.receivers, spec.shots)


def init_state(model: nn.Module, tx, objective: Objective, seed: int, spec: DatasetSpec) -> TrainState:
    rng = jax.random.PRNGKey(seed)
    # XLA:CPU compiles ~50 threefry draws in ~30 s (partitionable threefry); "rbg" keys take ~1 s.
    init_key = jax.random.key(seed, impl="rbg")
    variables = model.init(init_key, jnp.zeros((1,) + input_shape(spec)), train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.asarray(0, jnp.int32),
        params=params,
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(params),
        rng=rng,
        objective_state=objective.init_state(jax.random.fold_in(rng, _OBJECTIVE_STREAM)),
    )


def loss_and_grads(state: TrainState, batch: dict, *, objective: Objective):
    """((loss, (metrics, new batch_stats)), grads w.r.t. params) of one global batch."""
    rng = jax.random.fold_in(state.rng, state.step)
    loss_fn = jax.value_and_grad(objective.loss, has_aux=True)
    return loss_fn(state.params, state.batch_stats, state.objective_state, batch, rng)


def _network_update(state: TrainState, batch: dict, tx, objective: Objective) -> tuple[TrainState, dict]:
    (loss, (parts, batch_stats)), grads = loss_and_grads(state, batch, objective=objective)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state)
    return new_state, {"loss": loss, **parts, "grad_norm": optax.tree.norm(grads)}


def train_step(
    state: TrainState,
    batch: dict,
    *,
    tx,
    objective: Objective,
    schedule,
    spec: DatasetSpec,
    frozen: tuple[str, ...] = (),
) -> tuple[TrainState, dict]:
    """One step on a global batch (raw from the host or normalized on the devices): the objective's
    own update, then the network's (on every `objective.update_every`-th step). BatchNorm
    statistics span the whole batch, except those of ``frozen`` modules, which stay as they were.
    ``inputs_finite`` 0 flags NaN / inf in the raw inputs."""
    statistics_before = state.batch_stats
    batch, inputs_finite = prepare_batch(batch, spec)
    rng, lr = jax.random.fold_in(state.rng, state.step), schedule(state.step)
    objective_state, batch_stats, objective_metrics = objective.update_state(
        state.objective_state, state.params, state.batch_stats, batch, rng
    )
    state = state.replace(objective_state=objective_state, batch_stats=batch_stats)
    if objective.update_every == 1:
        state, metrics = _network_update(state, batch, tx, objective)
    else:  # e.g. a GAN's generator every n-th step; the other steps log the objective's own metrics

        def update(s):
            s, m = _network_update(s, batch, tx, objective)
            return s, m["grad_norm"]

        due = (state.step + 1) % objective.update_every == 0
        state, grad_norm = jax.lax.cond(due, update, lambda s: (s, jnp.zeros((), jnp.float32)), state)
        metrics = {"grad_norm": grad_norm, "network_updated": due.astype(jnp.float32)}
    metrics = {**metrics, **objective_metrics, "lr": lr, "inputs_finite": inputs_finite.astype(jnp.float32)}
    state = state.replace(batch_stats=freeze.keep_frozen_statistics(state.batch_stats, statistics_before, frozen))
    # The run log stops the run on a 0 here: parameters follow from finite losses and gradients, the
    # running statistics and the objective's state are checked directly (they can go bad alone).
    finite = _all_finite((metrics, state.batch_stats, state.objective_state))
    return state.replace(step=state.step + 1), {**metrics, "finite": finite.astype(jnp.float32)}


def _all_finite(tree: Any) -> jax.Array:
    arrays = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
    leaves = [jnp.all(jnp.isfinite(x)) for x in arrays if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def predict_step(state: TrainState, seismic: jax.Array, *, model: nn.Module) -> jax.Array:
    """Normalized seismic (B, T, R, S) -> normalized velocity (B, H, W, 1), BatchNorm in inference mode."""
    return model.apply({"params": state.params, "batch_stats": state.batch_stats}, seismic, train=False)


def eval_step(state: TrainState, batch: dict, *, model: nn.Module, spec: DatasetSpec) -> dict:
    """Masked metric sums of one global batch, raw or normalized (reduce on the host with metrics.finalize)."""
    batch, _ = prepare_batch(batch, spec)  # raw eval batches were checked for NaN / inf on the host
    return metrics_lib.metric_sums(predict_step(state, batch["seismic"], model=model), batch["velocity"], batch["mask"])


@dataclasses.dataclass(frozen=True)
class Steps:
    """The model, optimizer and objective of a config, and their jitted steps on one mesh.

    State is replicated, batches are sharded over the mesh's data axis; `train` donates the state.
    """

    model: nn.Module
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    objective: Objective
    spec: DatasetSpec
    seed: int
    mesh: Mesh
    train: Callable[[TrainState, dict], tuple[TrainState, dict]]
    eval: Callable[[TrainState, dict], dict]
    predict: Callable[[TrainState, jax.Array], jax.Array]
    finite: Callable[[TrainState], jax.Array]  # every float in the state is finite (run before each save)
    frozen: tuple[str, ...] = ()  # optim.freeze's module path prefixes

    def _init_fn(self) -> Callable[[], TrainState]:
        return functools.partial(init_state, self.model, self.tx, self.objective, self.seed, self.spec)

    def init(self) -> TrainState:
        """A fresh state created directly in replicated device buffers (no host tree for donation to alias)."""
        return jax.jit(self._init_fn(), out_shardings=parallel.replicated(self.mesh))()

    def train_on_device_data(self, make_batch: Callable[..., dict]) -> Callable[..., tuple[TrainState, dict]]:
        """The train step with its batch made inside it from the training split on the devices:
        ``(state, seismic, velocity) -> train(state, make_batch(state.step, seismic, velocity))``, both sharded
        over the batch axis (device placement's step: nothing comes from the host per step)."""
        step = _bound_train_step(self.tx, self.objective, self.schedule, self.spec, self.frozen)

        def fused(state: TrainState, seismic: jax.Array, velocity: jax.Array) -> tuple[TrainState, dict]:
            return step(state, make_batch(state.step, seismic, velocity))

        return _jit_train(fused, self.mesh, inputs=2)

    def abstract_state(self) -> TrainState:
        """Shapes, dtypes and shardings of the state: the target a checkpoint is restored onto."""
        return parallel.abstract_like(jax.eval_shape(self._init_fn()), parallel.replicated(self.mesh))


def make_steps(config: ml_collections.ConfigDict, spec: DatasetSpec, mesh: Mesh, steps_per_epoch: int = 1) -> Steps:
    """Build the model, optimizer, objective and jitted sharded steps of ``config`` on ``mesh``.

    ``steps_per_epoch`` only sets the learning-rate schedule's epoch boundaries (the optimizer
    state's structure does not depend on it, so restoring for inference may pass 1).
    """
    model = model_from_config(config, spec)
    schedule = learning_rate_schedule(config, steps_per_epoch)
    tx = make_optimizer(config, schedule)
    objective = make_objective(config, model, spec)
    frozen = freeze.prefixes(config.optim.freeze)
    if frozen:
        abstract = jax.eval_shape(functools.partial(init_state, model, tx, objective, int(config.seed), spec))
        freeze.check(abstract.params, config.optim.freeze)
    repl, batch = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    train = _jit_train(_bound_train_step(tx, objective, schedule, spec, frozen), mesh, inputs=1)
    evaluate = jax.jit(
        functools.partial(eval_step, model=model, spec=spec), in_shardings=(repl, batch), out_shardings=repl
    )
    predict = jax.jit(functools.partial(predict_step, model=model), in_shardings=(repl, batch), out_shardings=repl)
    finite = jax.jit(_all_finite, in_shardings=(repl,))
    return Steps(model, tx, schedule, objective, spec, int(config.seed), mesh, train, evaluate, predict, finite, frozen)


def _bound_train_step(tx, objective: Objective, schedule, spec: DatasetSpec, frozen: tuple[str, ...] = ()) -> Callable:
    return functools.partial(train_step, tx=tx, objective=objective, schedule=schedule, spec=spec, frozen=frozen)


def _jit_train(fn: Callable, mesh: Mesh, inputs: int) -> Callable[..., tuple[TrainState, dict]]:
    """``fn(state, *inputs)`` jitted as a train step: state replicated and donated, inputs sharded over the batch."""
    repl = parallel.replicated(mesh)
    shardings = (repl,) + (parallel.batch_sharded(mesh),) * inputs
    return jax.jit(fn, in_shardings=shardings, out_shardings=(repl, repl), donate_argnums=0)


# State fields renamed since checkpoints were first written: (name now, name in older checkpoints).
_RENAMED_FIELDS = (("objective_state", "extra"),)


def restore_or_init(
    ckpt: Checkpointer,
    steps: Steps,
    *,
    step: int | None = None,
    best: bool = False,
    config: ml_collections.ConfigDict | None = None,
    init: bool = True,
) -> tuple[TrainState, int]:
    """(state, next step): checkpoint ``step`` (default: latest / best) restored onto ``steps.mesh``,
    or, when ``ckpt`` holds none and ``init``, a fresh state and 0.

    Resume order: (1) the config saved with the checkpoint, which must agree with ``config`` (when
    given: training) on `config.RESUME_KEYS`; (2) the state (params, batch_stats, opt_state, step,
    rng, objective_state) onto the current mesh's shardings, whatever the device count it was saved
    with; (3) the data position (the next step's batches follow from it and the seed).
    """
    available = ckpt.best_step() if best else ckpt.latest_step()
    if step is None and available is None:
        if not init:
            raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
        return steps.init(), 0
    if config is not None:
        check_resume_compatible(ckpt.read_config(step, best=best), config, ckpt.directory)
    abstract = steps.abstract_state()
    target = {f.name: getattr(abstract, f.name) for f in dataclasses.fields(TrainState)}
    saved_keys = ckpt.state_keys(step, best=best)
    saved_name = {new: old for new, old in _RENAMED_FIELDS if old in saved_keys and new not in saved_keys}
    restored, data_pos, _ = ckpt.restore({saved_name.get(k, k): v for k, v in target.items()}, step, best=best)
    name_now = {old: new for new, old in saved_name.items()}
    state = TrainState(**{name_now.get(k, k): v for k, v in restored.items()})
    return state, int(data_pos["next_step"])
