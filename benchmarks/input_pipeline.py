"""Input pipeline throughput and peak memory: memory-mapped .npy vs TFDS array_record, 0 / 2 workers.

    python benchmarks/input_pipeline.py [--files 10] [--file-size 16] [--batches 40] [--train-preset openfwi]
    python benchmarks/input_pipeline.py --files 2 --file-size 4 --batch 4 --batches 6 --train-preset tiny \
        --cache /tmp/bench/datasets --out /tmp/ip.json                            # a check, ~2 min

About 5 minutes at the defaults on a 2-core CPU, the first time (the dataset is generated and built
as TFDS once, then cached under --cache).

Makes a FlatVel-A-like dataset with fwi_jax's generator (fast mode, cached), builds it as TFDS,
and also lists the same files 4x (hard links) to check that memory does not grow with the number
of files. Each configuration runs in its own process (peak RSS of that process tree, sampled every
20 ms). The target is compared with the full training step's samples/s measured in the same run.
Prints a table and writes benchmarks/results/input_pipeline.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

from _harness import Col, child_row, median, print_row, print_table, timings, write_results

from fwi_jax.paths import dataset_cache

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "input_pipeline.json"
SAMPLE_MB = 5 * 1000 * 70 * 4 / 2**20  # one float32 seismic sample
COLUMNS = [
    "source",
    "workers",
    "files",
    Col("samples/s", "samples_per_s", "{:.0f}"),
    Col("MB/s", lambda r: f"{r['samples_per_s'] * SAMPLE_MB:.0f}"),
    Col("x train step", "x_train_step", "{:.0f}x"),
    Col("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
]


def _tree_rss(proc) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except Exception:  # a worker that just exited
            pass
    return total


def measure(args: argparse.Namespace) -> None:
    """Child: iterate the pipeline, print one JSON line."""
    import psutil

    from fwi_jax.data import pipeline
    from fwi_jax.data.datasets import get_dataset
    from fwi_jax.data.sources import OpenFWISource, read_split

    spec = get_dataset("flatvel-a")
    if args.source == "npy":
        src = OpenFWISource(read_split(Path(args.root) / args.split, args.root), spec)
    else:
        from fwi_jax.data.tfds_source import TFDSSource

        src = TFDSSource(spec, "train", args.tfds_dir)
    me, peak, stop = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(me))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    it = pipeline.train_batches(src, args.batch, 0, 0, args.batches, num_threads=4, num_workers=args.workers)
    warm = 3
    for _ in range(warm):  # worker start-up and first reads are excluded
        next(it)
    t = time.perf_counter()
    n = 0
    for batch in it:
        n += len(batch["raw_seismic"])
    dt = time.perf_counter() - t
    it.close()
    stop.set()
    print_row({"samples_per_s": n / dt, "peak_rss_mb": peak[0] / 2**20, "samples": n, "len": len(src)})


def train_step_rate(preset: str, batch: int) -> dict:
    """Median samples/s of the full training step (forward, backward, AdamW) on this machine."""

    import jax
    import numpy as np

    from fwi_jax import parallel
    from fwi_jax.config import default_config
    from fwi_jax.data.datasets import get_dataset
    from fwi_jax.training.steps import input_shape, make_steps

    spec = get_dataset("flatvel-a")
    c = default_config()
    c.model.dims = preset
    steps = make_steps(c, spec, parallel.make_mesh(jax.devices()[:1]), steps_per_epoch=100)
    state, step = steps.init(), steps.train
    rng = np.random.default_rng(0)
    b = {
        "seismic": rng.normal(size=(batch, *input_shape(spec))).astype(np.float32),
        "velocity": rng.uniform(-1, 1, size=(batch, 70, 70, 1)).astype(np.float32),
    }

    def train_step() -> None:
        nonlocal state
        state, m = step(state, b)
        jax.block_until_ready(m)

    compile_s, *times = timings(train_step, 4)
    med = median(times)
    return {"preset": preset, "batch": batch, "step_s": med, "samples_per_s": batch / med, "first_call_s": compile_s}


def _dataset(args: argparse.Namespace) -> tuple[Path, Path]:
    root = Path(args.cache).expanduser() / f"bench-flatvel-a-n{args.files * args.file_size}-k{args.file_size}"
    if not (root / "train.txt").exists():
        cmd = [sys.executable, "-m", "fwi_jax.data.generate", "--family", "flatvel-a", "--mode", "fast"]
        cmd += ["--num", str(args.files * args.file_size), "--file-size", str(args.file_size), "--out", str(root)]
        subprocess.run(cmd + ["--val-files", "1"], check=True)
    # Every file in one split (the benchmark reads "all"), and a 4x longer list of hard links.
    many = root / "many"
    lines = []
    for copy in range(4):
        for k in range(1, args.files + 1):
            for kind, name in (("data", "data"), ("model", "model")):
                link = many / kind / f"{name}{copy * args.files + k}.npy"
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    os.link(root / kind / f"{name}{k}.npy", link)
            n = copy * args.files + k
            lines.append(f"many/data/data{n}.npy\tmany/model/model{n}.npy\n")
    (root / "all.txt").write_text("".join(lines[: args.files]))
    (root / "many.txt").write_text("".join(lines))
    tfds_dir = root / "tfds"
    if not (tfds_dir / "openfwi").exists():
        from fwi_jax.data import tfds_openfwi

        manual = root / "tfds_manual"  # split files for the builder: train = all files
        manual.mkdir(exist_ok=True)
        (manual / "train.txt").write_text((root / "all.txt").read_text().replace("many/", "../many/"))
        (manual / "val.txt").write_text(lines[0].replace("many/", "../many/"))
        tfds_openfwi.build("flatvel-a", manual, tfds_dir)
    return root, tfds_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=10)
    p.add_argument("--file-size", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--train-preset", default="openfwi", help="model preset whose train step sets the target")
    p.add_argument("--cache", default=str(dataset_cache()))
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--source", default="npy", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--split", help=argparse.SUPPRESS)
    p.add_argument("--tfds-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return measure(args)

    root, tfds_dir = _dataset(args)
    rows = []
    cases = [("npy", w, "all.txt") for w in (0, 2)] + [("npy", 0, "many.txt")] + [("tfds", w, None) for w in (0, 2)]
    for source, workers, split in cases:
        flags = ["--source", source, "--workers", workers, "--root", root, "--split", split, "--tfds-dir", tfds_dir]
        r = child_row(__file__, [*flags, "--batch", args.batch, "--batches", args.batches])
        files = args.files * (4 if split == "many.txt" else 1)
        rows.append({"source": source, "workers": workers, "files": files, **r})
        print(f"  {source:5s} workers={workers} files={files}: {r['samples_per_s']:.0f} samples/s", flush=True)
    print(f"timing the {args.train_preset} train step at batch {args.batch} ...", flush=True)
    train = train_step_rate(args.train_preset, args.batch)

    for r in rows:
        r["x_train_step"] = r["samples_per_s"] / train["samples_per_s"]
    title = f"input pipeline, batch {args.batch}, {args.batches - 3} timed batches ({platform.processor() or 'cpu'})"
    table = print_table(rows, COLUMNS, title)
    print(
        f"train step ({train['preset']}, batch {train['batch']}): {train['step_s']:.2f} s = "
        f"{train['samples_per_s']:.1f} samples/s; target: every row >= 10x"
    )
    few = next(r for r in rows if r["source"] == "npy" and r["workers"] == 0 and r["files"] == args.files)
    many = next(r for r in rows if r["files"] == 4 * args.files)
    growth = many["peak_rss_mb"] / few["peak_rss_mb"]
    print(f"peak RSS with {many['files']} files / {few['files']} files: {growth:.2f}x (target: ~1)")
    result = {
        "rows": rows,
        "train_step": train,
        "rss_growth_4x_files": growth,
        "meets_10x": all(r["x_train_step"] >= 10 for r in rows),
    }
    write_results(args.out, result, table, args=args)


if __name__ == "__main__":  # grain spawns worker processes that re-import this file
    main()
