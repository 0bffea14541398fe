"""TrainState, pure train / eval steps, and `train_and_evaluate` (the library behind the CLI)."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from fwi_jax import metrics as metrics_lib
from fwi_jax import parallel
from fwi_jax.checkpointing import Checkpointer, abstract_like, config_to_json
from fwi_jax.data import pipeline
from fwi_jax.data.datasets import DatasetSpec, get_dataset
from fwi_jax.data.sources import OpenFWISource, read_split
from fwi_jax.data.transforms import velocity_unit
from fwi_jax.metrics import describe
from fwi_jax.models import build_model

# Config sections that must match to resume from a checkpoint.
_RESUME_KEYS = ("model", "data.dataset", "data.source", "data.family", "data.mode", "seed", "batch_size")


class TrainState(struct.PyTreeNode):
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step)


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """Per-step linear warmup from warmup_factor, then x gamma at each milestone epoch."""
    o = config.optim
    warmup = int(o.warmup_epochs * steps_per_epoch)
    bounds = jnp.asarray(sorted(int(m * steps_per_epoch) for m in o.milestones) or [2**30], jnp.int32)

    def schedule(step):
        step = jnp.asarray(step)
        alpha = jnp.clip(step / max(warmup, 1), 0.0, 1.0) if warmup else 1.0
        factor = o.warmup_factor * (1 - alpha) + alpha
        decays = jnp.sum(step >= bounds) if o.milestones else 0
        return o.lr * factor * o.gamma**decays

    return schedule


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
    o = config.optim
    return optax.adamw(
        learning_rate_schedule(config, steps_per_epoch),
        b1=o.b1,
        b2=o.b2,
        eps=o.eps,
        weight_decay=o.weight_decay,
    )


def model_from_config(config: ml_collections.ConfigDict, spec: DatasetSpec) -> nn.Module:
    m = config.model
    return build_model(m.name, m.dims, (spec.depth, spec.width), m.compute_dtype, m.conv_impl)


def input_shape(spec: DatasetSpec) -> tuple[int, int, int]:
    return (spec.time_samples, spec.receivers, spec.shots)


def init_state(model: nn.Module, tx: optax.GradientTransformation, seed: int, spec: DatasetSpec) -> TrainState:
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
    )


def create_train_state(model, tx, seed: int, spec: DatasetSpec, mesh) -> TrainState:
    """Initialize directly into replicated device buffers (no host tree for donation to alias)."""
    fn = functools.partial(init_state, model, tx, seed, spec)
    return jax.jit(fn, out_shardings=parallel.replicated(mesh))()


def loss_and_grads(params, batch_stats, batch: dict, *, model: nn.Module, l1: float, l2: float):
    """((loss, (loss parts, new batch_stats)), grads) of one global batch."""

    def loss_of(p):
        pred, updates = model.apply(
            {"params": p, "batch_stats": batch_stats}, batch["seismic"], train=True, mutable=["batch_stats"]
        )
        loss, parts = metrics_lib.loss_fn(pred, batch["velocity"], l1, l2)
        return loss, (parts, updates["batch_stats"])

    return jax.value_and_grad(loss_of, has_aux=True)(params)


def train_step(state: TrainState, batch: dict, *, model: nn.Module, tx, l1: float, l2: float, schedule):
    """One optimizer step on a global batch; BatchNorm statistics span the whole batch."""
    (loss, (parts, batch_stats)), grads = loss_and_grads(
        state.params, state.batch_stats, batch, model=model, l1=l1, l2=l2
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        batch_stats=batch_stats,
        opt_state=opt_state,
    )
    return new_state, {
        "loss": loss,
        **parts,
        "lr": schedule(state.step),
        "grad_norm": optax.tree.norm(grads),
    }


def eval_step(state: TrainState, batch: dict, *, model: nn.Module) -> dict:
    pred = model.apply({"params": state.params, "batch_stats": state.batch_stats}, batch["seismic"], train=False)
    return metrics_lib.metric_sums(pred, batch["velocity"], batch["mask"])


def predict_step(state: TrainState, seismic: jax.Array, *, model: nn.Module) -> jax.Array:
    return model.apply({"params": state.params, "batch_stats": state.batch_stats}, seismic, train=False)


# ---------------------------------------------------------------------------------------------
# Data


def _default_cache() -> Path:
    return Path("~/.cache/fwi_jax/datasets").expanduser()


def prepare_data(config: ml_collections.ConfigDict) -> tuple[Any, Any, DatasetSpec]:
    """Train / val sources by ``data.source``: openfwi (.npy pairs in split files), tfds (a built
    ``openfwi/<dataset>``) or generated (made on first use and cached)."""
    d = config.data
    spec = get_dataset(d.dataset)
    if d.source == "tfds":
        try:
            from fwi_jax.data.tfds_openfwi import TFDSSource
        except ImportError as e:
            raise ValueError(f"data.source=tfds needs tensorflow-datasets ({e}): pip install -e '.[tfds]'") from None
        data_dir = Path(d.tfds_data_dir or "~/tensorflow_datasets").expanduser()
        return TFDSSource(spec, "train", data_dir), TFDSSource(spec, "validation", data_dir), spec
    if d.source == "generated":
        if d.num_samples < 2:
            raise ValueError("data.num_samples must be >= 2 for source=generated")
        cache = Path(d.cache_dir).expanduser() if d.cache_dir else _default_cache()
        root = cache / f"{d.family}-{d.mode}-seed{d.generation_seed}-n{d.num_samples}-k{d.file_size}-v{d.val_files}"
        if jax.process_index() == 0 and not (root / "val.txt").exists():
            _generate(d, root)
        if jax.process_count() > 1:  # the others wait for process 0's files
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("fwi_jax: generated data ready")
        train_split, val_split = root / "train.txt", root / "val.txt"
    elif d.source == "openfwi":
        if not d.root:
            raise ValueError(
                "data.root is empty: pass --config.data.root=/path/to/the/dataset (the folder of the .npy files)"
            )
        root = Path(d.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data.root {root} is not a directory; pass --config.data.root=... of the dataset")
        train_split, val_split = root / d.train_split, root / d.val_split
    else:
        raise ValueError(f"unknown data.source {d.source!r}; use 'openfwi', 'tfds' or 'generated'")
    train = OpenFWISource(read_split(train_split, root), spec)
    val = OpenFWISource(read_split(val_split, root), spec)
    return train, val, spec


def _generate(d: ml_collections.ConfigDict, root: Path) -> None:
    """Run the generator CLI in its own process: it can expose every core as a JAX device
    (this process's device count is fixed by now) and it resumes if interrupted."""
    cmd = [
        sys.executable,
        "-m",
        "fwi_jax.data.generate",
        "--family",
        d.family,
        "--num",
        str(d.num_samples),
        "--out",
        str(root),
        "--mode",
        d.mode,
        "--seed",
        str(d.generation_seed),
        "--file-size",
        str(d.file_size),
        "--val-files",
        str(d.val_files),
    ]
    print(f"generating the {d.family} dataset once into {root} (cached for later runs)", flush=True)
    if subprocess.run(cmd).returncode:  # its progress bar and errors go to this terminal
        raise RuntimeError(f"dataset generation failed (see above): {' '.join(cmd)}")


# ---------------------------------------------------------------------------------------------
# Logging


class MetricWriter:
    """JSONL (always) and TensorBoard events (tensorboardX, no TensorFlow) on process 0."""

    def __init__(self, workdir: Path, tensorboard: bool):
        self.enabled = jax.process_index() == 0
        self._tb = None
        if not self.enabled:
            return
        self._jsonl = open(workdir / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            if self._tb is not None:
                self._tb.close()


class _StopFlag:
    """SIGTERM / SIGINT set a flag; the loop saves a checkpoint and returns."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C aborts at once
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _check_resume_compatible(saved: dict, config: ml_collections.ConfigDict, ckpt_dir: Path) -> None:
    current = config_to_json(config)
    diffs = []
    for key in _RESUME_KEYS:
        a, b = saved, current
        for part in key.split("."):
            a, b = (a or {}).get(part), (b or {}).get(part)
        if a != b:
            diffs.append(f"{key}: checkpoint {a!r} vs now {b!r}")
    if diffs:
        raise ValueError(
            f"cannot resume from {ckpt_dir}: the config changed ({'; '.join(diffs)}). "
            "Restore those settings, or use a new --workdir to start a fresh run."
        )


def validate_config(config: ml_collections.ConfigDict, mesh) -> None:
    if config.batch_size < 2:
        raise ValueError("batch_size must be >= 2: BatchNorm over InversionNet's 1 x 1 bottleneck needs 2+ samples")
    parallel.check_batch_size(config.batch_size, mesh)
    if config.eval_batch_size:
        parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
    if config.num_epochs < 1 and config.num_train_steps <= 0:
        raise ValueError("set num_epochs >= 1 or num_train_steps > 0")


# ---------------------------------------------------------------------------------------------
# Loop


def evaluate(state, source, batch_size: int, mesh, eval_fn, threads: int, workers: int = 0) -> dict[str, float]:
    total = None
    batches = pipeline.eval_batches(
        source,
        batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_threads=threads,
        num_workers=workers,
    )
    with contextlib.closing(batches):
        for batch in batches:
            sums = eval_fn(state, parallel.global_batch(batch, mesh))
            total = metrics_lib.accumulate(total, jax.device_get(sums))
    return metrics_lib.finalize(total, velocity_unit(source.spec))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Train (resuming from `workdir` when it holds a checkpoint) and evaluate; returns a summary.

    The summary holds the final state, the last train / validation metrics, the step reached and
    whether a signal interrupted the run.
    """
    workdir = Path(workdir).expanduser().absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    if config.compilation_cache:  # later runs skip XLA compilation (tens of seconds on CPU)
        jax.config.update("jax_compilation_cache_dir", str(Path(config.compilation_cache).expanduser()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    mesh = parallel.make_mesh()
    validate_config(config, mesh)
    train_src, val_src, spec = prepare_data(config)
    spe = pipeline.steps_per_epoch(len(train_src), config.batch_size)
    if spe < 1:
        raise ValueError(f"{len(train_src)} training samples make no batch of {config.batch_size}; lower batch_size")
    total_steps = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * spe
    eval_every = config.eval_every_steps if config.eval_every_steps > 0 else spe
    eval_bs = config.eval_batch_size or config.batch_size

    model = model_from_config(config, spec)
    tx = make_optimizer(config, spe)
    schedule = learning_rate_schedule(config, spe)
    repl, batch_sh = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    step_fn = functools.partial(train_step, model=model, tx=tx, l1=config.loss.l1, l2=config.loss.l2, schedule=schedule)
    p_train = jax.jit(step_fn, in_shardings=(repl, batch_sh), out_shardings=(repl, repl), donate_argnums=0)
    p_eval = jax.jit(functools.partial(eval_step, model=model), in_shardings=(repl, batch_sh), out_shardings=repl)

    # Multi-process runs save synchronously: Orbax's async saves across processes aborted in CI (a background
    # save's cross-process barrier racing the next save's), and the final save must complete on all processes.
    async_save = config.async_checkpoints and jax.process_count() == 1
    ckpt = Checkpointer(workdir, keep=config.keep_checkpoints, async_save=async_save)
    config_json = {**config_to_json(config), "normalization": spec.normalization()}
    start = ckpt.latest_step()
    if start is not None:
        _check_resume_compatible(ckpt.read_config(start), config, ckpt.directory)
        abstract = abstract_like(jax.eval_shape(functools.partial(init_state, model, tx, config.seed, spec)), repl)
        state, data_pos, _ = ckpt.restore(abstract, start)
        start = int(data_pos["next_step"])
        print(f"resumed from {ckpt.directory} at step {start}")
    else:
        state = create_train_state(model, tx, config.seed, spec, mesh)
        start = 0

    with contextlib.ExitStack() as cleanup:  # close files and the manager on errors too
        cleanup.callback(ckpt.close)
        writer = MetricWriter(workdir, config.tensorboard)
        cleanup.callback(writer.close)
        batches = pipeline.train_batches(
            train_src,
            config.batch_size,
            config.seed,
            start,
            total_steps,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            num_threads=config.data.num_threads,
            num_workers=config.data.num_workers,
        )
        cleanup.callback(batches.close)
        bar = None
        if config.progress and jax.process_index() == 0:
            from tqdm import tqdm

            bar = tqdm(total=total_steps, initial=start, unit="step", desc="train", dynamic_ncols=True)
            cleanup.callback(bar.close)

        def save(step: int, force: bool = False) -> None:
            if ckpt.latest_step() != step:  # the final save may fall on a periodic one
                ckpt.save(step, state, {"next_step": step}, config_json, force=force)

        train_metrics: dict[str, float] = {}
        val_metrics: dict[str, float] = {}
        pending: list[dict] = []
        best_loss = math.inf
        step, interrupted = start, None
        t_last, step_last = time.perf_counter(), start
        with _StopFlag() as stop:
            for step in range(start + 1, total_steps + 1):
                batch = parallel.global_batch(next(batches), mesh)
                state, m = p_train(state, batch)
                pending.append(m)
                if step % config.log_every_steps == 0 or step == total_steps or stop.signum:
                    host = jax.device_get(pending)
                    losses = np.array([h["loss"] for h in host])
                    if not np.all(np.isfinite(losses)):
                        bad = step - len(host) + 1 + int(np.argmin(np.isfinite(losses)))
                        save_note = (
                            f"last checkpoint: step {ckpt.latest_step()}" if ckpt.latest_step() else "no checkpoint"
                        )
                        raise FloatingPointError(
                            f"training loss became {losses[~np.isfinite(losses)][0]} at step {bad} "
                            f"(steps {step - len(host) + 1}..{step}); {save_note}. Lower optim.lr or check the data."
                        )
                    now = time.perf_counter()
                    rate = (step - step_last) / max(now - t_last, 1e-9)
                    t_last, step_last = now, step
                    train_metrics = {k: float(np.mean([h[k] for h in host])) for k in host[0]}
                    train_metrics |= {
                        "steps_per_s": rate,
                        "samples_per_s": rate * config.batch_size,
                        "epoch": step / spe,
                    }
                    writer.write(step, "train", train_metrics)
                    pending = []
                    if bar is not None:
                        bar.set_postfix(
                            loss=f"{train_metrics['loss']:.4f}",
                            sps=f"{rate:.2f}",
                            samples_s=f"{rate * config.batch_size:.1f}",
                            refresh=False,
                        )
                        bar.update(step - bar.n)
                if step % eval_every == 0 or step == total_steps:
                    val_metrics = evaluate(
                        state, val_src, eval_bs, mesh, p_eval, config.data.num_threads, config.data.num_workers
                    )
                    val_loss = config.loss.l1 * val_metrics["mae_norm"] + config.loss.l2 * val_metrics["mse_norm"]
                    val_metrics["loss"] = val_loss
                    writer.write(step, "val", val_metrics)
                    line = f"step {step} (epoch {step / spe:.1f}): val loss {val_loss:.4f} | " + describe(val_metrics)
                    if bar is not None:
                        bar.write(line)
                    elif jax.process_index() == 0:
                        print(line, flush=True)
                    t_last, step_last = time.perf_counter(), step  # rates exclude evaluation
                    if val_loss < best_loss:
                        best_loss = val_loss
                        ckpt.save_best(step, state, {"next_step": step}, config_json, val_loss)
                if step % config.checkpoint_every_steps == 0:
                    save(step)
                if stop.signum is not None:
                    interrupted = signal.Signals(stop.signum).name
                    break
            save(step, force=True)
            ckpt.wait()
        if interrupted:
            print(
                f"{interrupted} at step {step}: checkpoint saved in {ckpt.directory}; re-run the same command to resume"
            )
        elif jax.process_count() == 1 and config.num_plot_samples > 0:  # evaluate draws multi-process runs
            from fwi_jax import viz

            batch = next(pipeline.eval_batches(val_src, eval_bs, num_threads=1))
            n = min(config.num_plot_samples, len(val_src), eval_bs)
            pred = jax.jit(functools.partial(predict_step, model=model))(state, jnp.asarray(batch["seismic"]))
            viz.save_prediction_grid(
                workdir / "predictions.png", batch["velocity"][:n, ..., 0], np.asarray(pred)[:n, ..., 0], spec
            )
    # Every step must reuse one executable: a second compilation means a shape or sharding changed.
    compilations = p_train._cache_size() if hasattr(p_train, "_cache_size") else None
    if compilations and compilations > 1 and jax.process_index() == 0:
        print(f"warning: the train step compiled {compilations} times in this run (expected once)", file=sys.stderr)
    return {
        "state": state,
        "step": step,
        "train_step_compilations": compilations,
        "train": train_metrics,
        "val": val_metrics,
        "interrupted": interrupted,
        "steps_per_epoch": spe,
        "total_steps": total_steps,
    }
