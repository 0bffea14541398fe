"""`train_and_evaluate`: the training loop (the library behind ``python -m fwi_jax.train``)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fwi_jax import metrics as metrics_lib
from fwi_jax import parallel, viz
from fwi_jax.checkpointing import Checkpointer
from fwi_jax.config import config_to_json
from fwi_jax.data import pipeline
from fwi_jax.data.device import DeviceBatches
from fwi_jax.data.open import open_sources
from fwi_jax.data.sources import DataFileChanged
from fwi_jax.data.transfer import DevicePrefetch
from fwi_jax.data.transforms import velocity_unit
from fwi_jax.fileio import check_output_dir
from fwi_jax.models.tune import tune_for_training
from fwi_jax.training import finetune, freeze, guards
from fwi_jax.training.runlog import RunLog
from fwi_jax.training.steps import Steps, TrainState, make_steps, restore_or_init, total_steps
from fwi_jax.training.stop_flag import StopFlag
from fwi_jax.training.workdir_lock import WorkdirLock


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Step counts derived from the config and the training set's size."""

    steps_per_epoch: int
    total_steps: int
    eval_every: int
    eval_batch_size: int

    @classmethod
    def of(cls, config: ml_collections.ConfigDict, num_train: int, devices: int = 1) -> RunPlan:
        spe = pipeline.steps_per_epoch(num_train, config.batch_size)
        if config.data.placement == "device":  # each device samples its own shard
            spe = (num_train // devices) // (config.batch_size // devices)
        if spe < 1:
            raise ValueError(f"{num_train} training samples make no batch of {config.batch_size}; lower batch_size")
        total = total_steps(config, spe)
        eval_every = config.eval_every_steps if config.eval_every_steps > 0 else spe
        return cls(spe, total, eval_every, config.eval_batch_size or config.batch_size)


# A copy in new device buffers: the donating train step deletes the buffers of the state it is given.
_device_snapshot = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


class Saver:
    """Writes the latest checkpoint and the best export together, at the checkpoint cadence.

    A new best is kept as a copy on the devices and written just before the next checkpoint (or the
    final save): an export costs an Orbax save (0.4-0.8 s of host time with 8 devices, which stalls a
    fast accelerator) and evaluation often comes more often than checkpoints. The export on disk is
    thus never ahead of the latest checkpoint; a run that crashes loses only what its resume recomputes.
    """

    def __init__(self, ckpt: Checkpointer, saved_config: dict):
        self.ckpt, self.saved_config = ckpt, saved_config
        self._best: tuple[int, TrainState, float] | None = None

    def keep_best(self, step: int, state: TrainState, val_loss: float) -> None:
        """Hold a copy of the new best state on the devices until the next `save` writes it."""
        self._best = (step, _device_snapshot(state), val_loss)

    def save(self, step: int, state: TrainState, force: bool = False) -> None:
        if self._best is not None:
            best_step, best_state, val_loss = self._best
            self.ckpt.save_best(best_step, best_state, {"next_step": best_step}, self.saved_config, val_loss)
            self._best = None
        if self.ckpt.latest_step() != step:  # the final save may fall on a periodic one
            self.ckpt.save(step, state, {"next_step": step}, self.saved_config, force=force)


def validate_config(config: ml_collections.ConfigDict, mesh) -> None:
    if config.batch_size < 2:
        raise ValueError("batch_size must be >= 2: BatchNorm over InversionNet's 1 x 1 bottleneck needs 2+ samples")
    parallel.check_batch_size(config.batch_size, mesh)
    if config.eval_batch_size:
        parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
    if config.num_epochs < 1 and config.num_train_steps <= 0:
        raise ValueError("set num_epochs >= 1 or num_train_steps > 0")
    if config.data.placement not in ("host", "device"):
        raise ValueError(f"data.placement must be 'host' or 'device', got {config.data.placement!r}")


def evaluate(state: TrainState, source, steps: Steps, batch_size: int, data: ml_collections.ConfigDict) -> dict:
    """Global metrics of `state` over every sample of `source` (this process's share, reduced on host)."""
    total = None
    with contextlib.closing(
        pipeline.eval_batches(
            source,
            batch_size,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            num_threads=data.num_threads,
            num_workers=data.num_workers,
            raw=True,
        )
    ) as batches:
        for batch in batches:
            sums = steps.eval(state, parallel.global_batch(batch, steps.mesh))
            total = metrics_lib.accumulate(total, jax.device_get(sums))
    return metrics_lib.finalize(total, velocity_unit(source.spec))


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, take_over_lock: bool = False
) -> dict[str, Any]:
    """Train (resuming from `workdir` when it holds a checkpoint) and evaluate; returns a summary:
    the final state, the last train / validation metrics, the step reached, and the signal that
    interrupted the run (None when it finished). The run holds the workdir's lock throughout
    (`workdir_lock.WorkdirLock`; ``take_over_lock`` takes over one left on another host).

    Library code leaves JAX's global settings alone: the persistent compilation cache
    (``config.compilation_cache``) is set by the entry point (`fwi_jax.train`)."""
    workdir = check_output_dir(workdir, "--workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    with WorkdirLock(workdir, take_over=take_over_lock):
        return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
    mesh = parallel.make_mesh()
    validate_config(config, mesh)
    train_src, val_src, spec = open_sources(config)
    plan = RunPlan.of(config, len(train_src), mesh.devices.size)
    tune_for_training(config)  # model.tune_convs: before the steps are traced, which reads the cached forms
    steps = make_steps(config, spec, mesh, plan.steps_per_epoch)
    # Multi-process runs save synchronously: Orbax's async saves across processes aborted in CI (a background
    # save's cross-process barrier racing the next save's), and the final save must complete on all processes.
    async_save = config.async_checkpoints and jax.process_count() == 1
    ckpt = Checkpointer(workdir, keep=config.keep_checkpoints, async_save=async_save)
    state, start, pretrained = _start(config, ckpt, steps)
    saver = Saver(ckpt, {**config_to_json(config), "normalization": spec.normalization()})

    with contextlib.ExitStack() as cleanup:  # close files and the manager on errors too
        cleanup.callback(ckpt.close)
        log = RunLog.of(workdir, config, plan.steps_per_epoch, plan.total_steps, start)
        cleanup.callback(log.close)
        if pretrained is not None:
            log.writer.write(0, "init_from", pretrained)
        name_bad_inputs = None  # device-resident data are checked as they load
        if config.data.placement == "host":
            name_bad_inputs = functools.partial(pipeline.named_nonfinite, train_src, config.batch_size, config.seed)
        train = _train_step_with_inputs(train_src, config, steps, start, plan.total_steps)
        cleanup.callback(train.close)
        stop = cleanup.enter_context(StopFlag())
        best_loss, step = ckpt.resume_best(start), start
        try:
            for step in range(start + 1, plan.total_steps + 1):
                state, m = train.step(state, *train.inputs())
                log.record(m)
                last = step == plan.total_steps
                evaluating, saving = step % plan.eval_every == 0 or last, step % config.checkpoint_every_steps == 0
                # Every step that evaluates or saves is checked for non-finite values first: no NaN is ever saved.
                if step % config.log_every_steps == 0 or last or evaluating or saving or stop.signum is not None:
                    window = log.take_window()
                    guards.check_window(window, step - len(window) + 1, ckpt.latest_step(), name_bad_inputs)
                    log.train(step, window)  # finite: written before the whole state's check, as a record
                    guards.check_state(bool(steps.finite(state)), step, ckpt.latest_step())
                if evaluating:
                    val = evaluate(state, val_src, steps, plan.eval_batch_size, config.data)
                    val["loss"] = steps.objective.validation_loss(val)
                    guards.check_metrics(val, step, "validation metrics", ckpt.latest_step())
                    log.val(step, val)
                    if val["loss"] < best_loss:
                        best_loss = val["loss"]
                        saver.keep_best(step, state, val["loss"])
                if saving:
                    saver.save(step, state)
                if stop.signum is not None:
                    break
        except DataFileChanged as e:  # nothing of this step is saved; the checkpoints on disk are whole
            ckpt.wait()
            raise DataFileChanged(
                f"{e}. The checkpoints are intact (last: step {ckpt.latest_step()}); restore the file (or regenerate "
                "the dataset), then rerun the same command to resume"
            ) from None
        saver.save(step, state, force=True)
        ckpt.wait()
        if stop.name:
            print(
                f"{stop.name} at step {step}: checkpoint saved in {ckpt.directory}; re-run the same command to resume"
            )
        elif jax.process_count() == 1 and config.num_plot_samples > 0:  # evaluate draws multi-process runs
            _plot_predictions(
                workdir / "predictions.png", state, steps, val_src, plan.eval_batch_size, config.num_plot_samples
            )
    return {
        "state": state,
        "step": step,
        "train_step_compilations": _compilations(train.step),
        "train": log.train_metrics,
        "val": log.val_metrics,
        "interrupted": stop.name,
        "steps_per_epoch": plan.steps_per_epoch,
        "total_steps": plan.total_steps,
    }


def _start(config: ml_collections.ConfigDict, ckpt: Checkpointer, steps: Steps) -> tuple[TrainState, int, dict | None]:
    """(state, next step, the fine-tuning source's record or None): the run's own latest checkpoint, else
    ``init_from``'s weights (a new fine-tuning run), else a fresh state."""
    pretrained = None
    if config.init_from and ckpt.latest_step() is None:  # a resumed fine-tuning run never rereads the source
        pretrained = finetune.load(config.init_from, steps)
        finetune.warn_normalization(pretrained, steps.spec.normalization())
        state, start = finetune.initial_state(steps, pretrained), 0
    else:
        state, start = restore_or_init(ckpt, steps, config=config)
    if start:
        print(f"resumed from {ckpt.directory} at step {start}")
    trainable, frozen = freeze.count(state.params, steps.frozen)
    if pretrained is not None or frozen:
        source = f"initialized from {pretrained.label}; " if pretrained else ""
        total = trainable + frozen
        print(f"{source}training {trainable:,} of {total:,} parameters (optim.freeze={config.optim.freeze})")
    record = None
    if pretrained is not None:
        record = {"source": pretrained.label, "trainable_params": trainable, "frozen_params": frozen}
    return state, start, record


@dataclasses.dataclass(frozen=True)
class _StepWithInputs:
    """The jitted train step and where its per-step inputs come from."""

    step: Callable[..., tuple[TrainState, dict]]  # (state, *inputs()) -> (state, metrics)
    inputs: Callable[[], tuple]
    close: Callable[[], None]


def _train_step_with_inputs(
    source, config: ml_collections.ConfigDict, steps: Steps, start: int, total_steps: int
) -> _StepWithInputs:
    """The train step and its per-step inputs for steps start + 1 .. total_steps. placement=device: the split
    on the devices, each batch gathered inside the step from the state's step (no per-step input);
    placement=host: raw batches read by this process's grain pipeline, copied to the devices two steps ahead."""
    if config.data.placement == "device":
        data = DeviceBatches(
            source, config.batch_size, config.seed, steps.mesh, config.data.storage_dtype, progress=config.progress
        )
        return _StepWithInputs(
            steps.train_on_device_data(data.make_batch), lambda: (data.seismic, data.velocity), data.close
        )
    host = pipeline.train_batches(
        source,
        config.batch_size,
        config.seed,
        start,
        total_steps,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_threads=config.data.num_threads,
        num_workers=config.data.num_workers,
    )
    batches = DevicePrefetch(host, steps.mesh, depth=2)
    return _StepWithInputs(steps.train, lambda: (next(batches),), batches.close)


def _plot_predictions(path: Path, state: TrainState, steps: Steps, source, batch_size: int, count: int) -> None:
    n = min(count, len(source), batch_size)
    batch = pipeline.read_normalized(source, np.arange(batch_size) % len(source))
    pred = np.asarray(steps.predict(state, batch["seismic"]))
    viz.save_prediction_grid(path, batch["velocity"][:n, ..., 0], pred[:n, ..., 0], steps.spec)


def _compilations(jitted) -> int | None:
    """How often the train step compiled; more than once means a shape or sharding changed mid-run."""
    n = jitted._cache_size() if hasattr(jitted, "_cache_size") else None
    if n and n > 1 and jax.process_index() == 0:
        print(f"warning: the train step compiled {n} times in this run (expected once)", file=sys.stderr)
    return n
