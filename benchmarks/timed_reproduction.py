"""FlatVel-A reproduced inside a time budget on one machine: generate the data, train the full
InversionNet with the reference recipe, evaluate on held-out samples.

    python benchmarks/timed_reproduction.py --budget-s 200 --out DIR/timed_reproduction.json
    python benchmarks/timed_reproduction.py --quick --budget-s 150 --out /tmp/tr.json   # a CPU check, ~2 min

In one process, within --budget-s seconds:
  1. probe the fast solver (one call of --gen-batch models after its compile) and the train step
     (its compile, then three steps on random batches);
  2. size the set from a time model: --gen-share of the time left makes and loads the data, the rest
     trains; at most --samples training samples (24,000: the real FlatVel-A training set), capped by
     free disk and device memory (bfloat16 storage when float32 would not fit), plus 1/12 held out;
  3. generate them (fwi_jax.data.generate, --gen-batch models per solver call) into --work;
  4. train (fwi_jax.training.loop, the training set resident on the devices) with the reference's
     optimizer and loss (AdamW lr 1e-4, weight decay 1e-4, l1 + l2, batch 256) for as many steps as
     the time left holds (whole epochs when they fit, at most --max-epochs), the cosine decay spanning
     exactly those steps (the reference runs 120 epochs at a constant rate), and evaluate the held-out
     samples;
  5. print and write the row: samples/s of generation and training, epochs, MAE / RMSE / SSIM, beside
     the OpenFWI benchmark page's FlatVel-A rows (a far longer schedule on real data: a ceiling).
A SIGTERM (the accelerator script's time limit) ends the run through its `finally`: the generated set
is deleted unless --keep (or it was an earlier run's).
`--quick` takes the tiny widths, batch 8, at most 48 samples and one epoch, to check the whole path on a CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from _harness import prepare_host

prepare_host(__name__)

# ruff: noqa: E402
import jax
import numpy as np
from _harness import Col, print_table, write_results

from fwi_jax import parallel
from fwi_jax.config import dataset_config
from fwi_jax.data import velocity
from fwi_jax.data.datasets import get_dataset
from fwi_jax.data.device import dataset_bytes, free_device_bytes
from fwi_jax.data.generate import GenerationSpec, generate_dataset
from fwi_jax.data.open import generated_root
from fwi_jax.physics import forward, openfwi_geometry
from fwi_jax.published import published_rows
from fwi_jax.training.loop import train_and_evaluate
from fwi_jax.training.steps import input_shape, make_steps

SPEC = get_dataset("flatvel-a")
HELD_OUT = 12  # one sample in 12 is held out for evaluation


def _page(row: dict, loss: str) -> str:
    page = next((p for s, p in row["published"].items() if f"inversionnet, {loss}" in s), None)
    return f"{page['mae_norm']:.4f} / {page['rmse_norm']:.4f} / {page['ssim']:.4f}" if page else "-"


COLUMNS = [
    Col("train / held out", lambda r: f"{r['train_samples']} / {r['val_samples']}"),
    Col("generated/s", "gen_samples_per_s", "{:.0f}"),
    Col("epochs", "epochs", "{:.2f}"),
    Col("trained samples/s", "train_samples_per_s", "{:.0f}"),
    Col("MAE / RMSE (norm)", lambda r: f"{r['mae_norm']:.4f} / {r['rmse_norm']:.4f}"),
    Col("SSIM", "ssim", "{:.4f}"),
    Col("MAE (m/s)", "mae_ms", "{:.1f}"),
    Col("OpenFWI page, l1: MAE / RMSE / SSIM", lambda r: _page(r, "l1")),
    Col("total (s)", "seconds", "{:.0f}"),
]


def base_config(a: argparse.Namespace, cache: Path):
    c = dataset_config("flatvel-a")  # the reference recipe: AdamW 1e-4 / 1e-4, l1 + l2, batch 256
    c.data.update(source="generated", family="flatvel-a", mode="fast", placement="device", cache_dir=str(cache))
    c.model.compute_dtype = a.dtype
    c.optim.decay = "cosine"
    c.progress = False
    c.num_plot_samples = 2
    c.compilation_cache = ""
    if a.quick:
        c.model.dims = "tiny"
        c.batch_size = 8
    return c


def probe_generation(gen_batch: int) -> float:
    """Models per second of the fast solver at ``gen_batch`` models per call, after its compile."""
    geometry = openfwi_geometry("released")
    models = velocity.generate("flatvel-a", gen_batch, 1, geometry.nz, geometry.nx)
    np.asarray(forward(models, geometry, mode="fast"))
    t = time.perf_counter()
    np.asarray(forward(models, geometry, mode="fast"))
    return gen_batch / (time.perf_counter() - t)


def size_dataset(a: argparse.Namespace, n_time: int, cache: Path, mesh) -> tuple[int, int, str, str]:
    """(train samples, file size, storage dtype, what limited the size); ``n_time``: what the time allows."""
    per_sample = dataset_bytes(1, SPEC, "float32")
    limits = {
        "--samples": a.samples,
        "time": n_time,
        "free disk": int(0.8 * shutil.disk_usage(cache).free / per_sample * (HELD_OUT - 1) / HELD_OUT),
    }
    free, _ = free_device_bytes(mesh)
    storage = "float32" if dataset_bytes(min(limits.values()), SPEC, "float32") < 0.8 * free else "bfloat16"
    limits["device memory"] = int(0.8 * free / dataset_bytes(1, SPEC, storage))
    limit = min(limits, key=limits.get)
    # Whole held-out files: the training set is (HELD_OUT - 1) files of `file_size`, one more held out;
    # a file is whole solver calls (a last, smaller call would compile the solver again).
    file_size = max(limits[limit] // (HELD_OUT - 1), a.min_file)
    if file_size > a.gen_batch:
        file_size -= file_size % a.gen_batch
    return file_size * (HELD_OUT - 1), file_size, storage, limit


def probe_step(config, mesh) -> tuple[float, float]:
    """(compile seconds, seconds per train step) of this config's step on random batches."""
    steps = make_steps(config, SPEC, mesh, 1000)
    state = steps.init()
    rng = np.random.default_rng(0)
    batch = parallel.global_batch(
        {
            "seismic": rng.normal(size=(config.batch_size, *input_shape(SPEC))).astype(np.float32),
            "velocity": rng.uniform(-1, 1, size=(config.batch_size, 70, 70, 1)).astype(np.float32),
        },
        mesh,
    )
    t = time.perf_counter()
    train = steps.train.lower(state, batch).compile()
    compile_s = time.perf_counter() - t
    state, m = train(state, batch)
    jax.block_until_ready(m)
    n = 3
    t = time.perf_counter()
    for _ in range(n):
        state, m = train(state, batch)
    jax.block_until_ready(m)
    return compile_s, (time.perf_counter() - t) / n


def run(a: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    left = lambda: a.budget_s - (time.perf_counter() - t0)  # noqa: E731
    cache = Path(a.work).expanduser().absolute()
    cache.mkdir(parents=True, exist_ok=True)
    mesh = parallel.make_mesh()
    config = base_config(a, cache)
    rate = probe_generation(a.gen_batch)
    compile_s, step_s = probe_step(config, mesh)
    # The time model: the trainer compiles its train and eval steps again (~2.5 probe compiles); each
    # training sample costs its solver share (at 60% of the probed rate: the velocity models and the
    # file writes come on top) and its load onto the devices (~1 GB/s); --gen-share of the rest makes
    # and loads data, the remainder trains.
    room = left() - 2.5 * compile_s - 0.05 * a.budget_s
    per_sample = HELD_OUT / (HELD_OUT - 1) / (0.6 * rate) + dataset_bytes(1, SPEC, "float32") / 1e9
    n_train, file_size, storage, limit = size_dataset(a, int(a.gen_share * room / per_sample), cache, mesh)
    print(
        f"probes: fast solver {rate:.0f} models/s at {a.gen_batch} per call; train step {step_s:.3f} s after a "
        f"{compile_s:.0f} s compile. {n_train} training samples (limited by {limit}), storage {storage}",
        flush=True,
    )
    config.data.update(num_samples=n_train + file_size, file_size=file_size, val_files=1, storage_dtype=storage)
    root = generated_root(config.data)
    reused = (root / "val.txt").exists()  # an earlier --keep run's set: reused, and kept
    spec = GenerationSpec("flatvel-a", n_train + file_size, seed=0, mode="fast", file_size=file_size, val_files=1)
    try:
        t = time.perf_counter()
        gen = generate_dataset(spec, root, batch_size=a.gen_batch, progress=not a.quiet)
        gen_s = time.perf_counter() - t
        row = train(a, config, n_train, left, compile_s, step_s)
    finally:
        if not (a.keep or reused):  # only what this run made: --work may be a folder of the user's
            shutil.rmtree(root, ignore_errors=True)
    return {
        **row,
        "train_samples": n_train,
        "val_samples": file_size,
        "size_limited_by": limit,
        "gen_probe_models_per_s": rate,
        "gen_s": gen_s,
        "gen_samples_per_s": gen["samples_per_s"],  # None when an earlier run's set (--keep) was reused
        "step_probe_s": step_s,
        "step_samples_per_s": config.batch_size / step_s,
        "compile_probe_s": compile_s,
        "seconds": time.perf_counter() - t0,
        "budget_s": a.budget_s,
    }


def train(a: argparse.Namespace, config, n_train: int, left, compile_s: float, step_s: float) -> dict:
    """Size the run to the time left, train, evaluate the held-out file; the row's training fields."""
    spe = n_train // config.batch_size
    held_out = config.data.file_size
    load_s = dataset_bytes(n_train + held_out, SPEC, "float32") / 1e9
    evals = 4
    eval_s = evals * (held_out / config.batch_size + 1) * step_s / 3  # an eval batch: ~1/3 of a train step
    room = left() - 2.5 * compile_s - load_s - eval_s - 0.05 * a.budget_s
    # Whole epochs when they fit, else part of one: never more steps than the time holds.
    steps = min(a.max_epochs * spe, max(1, int(room / step_s)))
    if steps >= spe:
        steps -= steps % spe
    config.num_train_steps = steps  # the cosine schedule spans exactly these steps
    config.eval_every_steps = max(1, steps // evals)
    config.log_every_steps = max(1, min(spe, steps // 4))
    config.checkpoint_every_steps = steps
    epochs = steps * config.batch_size / n_train
    print(f"training {steps} steps ({epochs:.2f} epochs of {spe} steps) in the {left():.0f} s left", flush=True)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=config.data.cache_dir) as workdir:
        summary = train_and_evaluate(config, workdir)
    train_s = time.perf_counter() - t
    val = summary["val"]
    published = {r["source"]: r for r in published_rows("flatvel-a") if r.get("filled") and "rmse_norm" in r}
    return {
        "device": f"{len(jax.devices())} x {jax.devices()[0].device_kind}",
        "dims": config.model.dims,
        "compute_dtype": config.model.compute_dtype,
        "storage_dtype": config.data.storage_dtype,
        "epochs": epochs,
        "steps": int(summary["step"]),
        "interrupted": summary["interrupted"],
        "train_s": train_s,
        "train_samples_per_s": int(summary["step"]) * config.batch_size / train_s,
        **{k: float(val[k]) for k in ("mae_norm", "rmse_norm", "ssim", "mae_ms", "rmse_ms")},
        "published": published,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget-s", type=float, default=200.0, help="wall time for the whole part")
    p.add_argument("--samples", type=int, default=24000, help="most training samples to generate")
    p.add_argument("--gen-share", type=float, default=0.4, help="share of the time after the probes for data")
    p.add_argument("--gen-batch", type=int, default=256, help="models per solver call")
    p.add_argument("--max-epochs", type=int, default=120, help="at most this many epochs (the reference's 120)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="model compute dtype")
    p.add_argument("--quick", action="store_true", help="tiny widths, batch 8, <= 48 samples, 1 epoch: a CPU check")
    p.add_argument(
        "--work",
        default=os.path.join(tempfile.gettempdir(), "fwi_jax_timed_reproduction"),
        help="folder for the generated set (deleted at the end unless --keep)",
    )
    p.add_argument("--keep", action="store_true", help="keep the generated set")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, help="JSON results file")
    a = p.parse_args()
    if a.quick:
        a.samples, a.gen_batch, a.max_epochs = min(a.samples, 48), min(a.gen_batch, 4), min(a.max_epochs, 1)
    a.min_file = 8 if a.quick else 256  # at least one batch of 256 in the held-out file
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through run()'s cleanup
    row = run(a)
    title = (
        f"FlatVel-A in {a.budget_s:.0f} s on {row['device']}: generated (fast solver), InversionNet "
        f"({row['dims']} widths, {row['compute_dtype']}) trained from scratch, held-out samples"
    )
    table = print_table([row], COLUMNS, title)
    write_results(a.out, {"rows": [row]}, table, args=a)


if __name__ == "__main__":
    main()
