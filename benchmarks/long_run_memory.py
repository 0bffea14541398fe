"""Memory over a long run: does the trainer's resident memory (or the devices') grow with steps?

    python benchmarks/long_run_memory.py [--steps 3000] [--batch 4] [--samples 64] [--placements host device]
        [--every 2] [--out FILE]
    python benchmarks/long_run_memory.py --steps 300 --out /tmp/mem.json          # a check, ~3 minutes

About 25 minutes at the defaults on a 2-core CPU (two child processes, one per placement).

Each placement runs `train_and_evaluate` (the trainer's own loop: the tiny preset on generated
FlatVel-A-like data, evaluation every epoch, checkpoints every --checkpoint-every steps, metrics
and TensorBoard logs) in a fresh child process, while a thread samples every --every seconds: the
process's RSS (VmRSS), the bytes of the live JAX arrays, and the devices' own allocator figures
where the backend has them (`memory_stats()`: GPUs and TPUs; None on CPU). The baseline is the
sample at the end of warm-up: the first epoch, evaluation and checkpoint done, so every computation
has compiled and every buffer pool filled (--warmup-steps, default the first checkpoint). Growth is
the last sample inside the run (before its final save and release) against the baseline, and the
least-squares slope of RSS over the steps after
warm-up says whether memory creeps (MB per 1000 steps). Target: growth < 5% after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from _harness import prepare_host

prepare_host(__name__)  # first: huge pages, as `python -m fwi_jax.train` runs; the children inherit them

# ruff: noqa: E402
from _harness import Col, child_row, print_row, print_table, write_results

from fwi_jax.paths import dataset_cache

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "long_run_memory.json"
TARGET_GROWTH = 0.05


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _last_step(metrics: Path) -> int:
    """The newest step the run logged (0 before its first record)."""
    try:
        with metrics.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().splitlines()
    except OSError:
        return 0
    for line in reversed(tail):
        if line.startswith(b'{"step": '):
            return int(line[9 : line.index(b",")])
    return 0


class Sampler(threading.Thread):
    """(seconds, step, RSS MB, live JAX arrays MB, device bytes in use MB or None) every `every` s."""

    def __init__(self, metrics: Path, every: float):
        super().__init__(daemon=True)
        self.metrics, self.every, self.samples, self.done = metrics, every, [], threading.Event()

    def sample(self) -> None:
        import jax

        live = sum(a.nbytes for a in jax.live_arrays()) / 2**20
        stats = [d.memory_stats() for d in jax.local_devices()]
        in_use = sum(s["bytes_in_use"] for s in stats) / 2**20 if all(stats) else None
        self.samples.append((time.perf_counter(), _last_step(self.metrics), _rss_mb(), live, in_use))

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.sample()


def config_for(args: argparse.Namespace, placement: str):
    from fwi_jax.config import default_config

    c = default_config()
    c.data.source, c.data.family, c.data.mode = "generated", "flatvel-a", "fast"
    c.data.num_samples, c.data.file_size, c.data.val_files = args.samples + 16, 16, 1
    c.data.cache_dir, c.data.placement = args.cache, placement
    c.model.dims, c.batch_size, c.num_train_steps = "tiny", args.batch, args.steps
    c.log_every_steps, c.checkpoint_every_steps = 25, args.checkpoint_every
    c.progress, c.num_plot_samples = False, 0
    return c


def slope_mb_per_1000(points: list[tuple[int, float]]) -> float:
    import numpy as np

    steps, values = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    if len(points) < 3 or np.ptp(steps) == 0:
        return float("nan")
    return float(np.polyfit(steps, values, 1)[0] * 1000)


def summarize(samples: list[dict], warmup: int) -> dict:
    """Growth from the first sample at or after step ``warmup`` to the last one inside the run."""
    inside, after_run = samples[:-1], samples[-1]
    after = [s for s in inside if s["step"] >= warmup]
    if len(after) < 2:
        raise SystemExit(f"too few samples after warm-up (step {warmup}); run more --steps or sample more often")
    base, last = after[0], after[-1]
    return {
        "warmup_step": base["step"],
        "rss_base_mb": base["rss_mb"],
        "rss_end_mb": last["rss_mb"],
        "rss_after_run_mb": after_run["rss_mb"],
        "rss_peak_mb": max(s["rss_mb"] for s in inside),
        "rss_min_after_warmup_mb": min(s["rss_mb"] for s in after),
        "rss_growth": last["rss_mb"] / base["rss_mb"] - 1,
        "rss_slope_mb_per_1000_steps": slope_mb_per_1000([(s["step"], s["rss_mb"]) for s in after]),
        "live_base_mb": base["live_mb"],
        "live_end_mb": last["live_mb"],
        "device_in_use_base_mb": base["device_mb"],
        "device_in_use_end_mb": last["device_mb"],
    }


def child(args: argparse.Namespace) -> None:
    """One placement's run, sampled; prints one JSON row."""
    import jax

    from fwi_jax.training.loop import train_and_evaluate

    config = config_for(args, args.placement)
    workdir = Path(tempfile.mkdtemp(prefix="fwi_jax_memory_"))
    sampler = Sampler(workdir / "metrics.jsonl", args.every)
    sampler.start()
    t0 = time.perf_counter()
    summary = train_and_evaluate(config, workdir)
    sampler.done.set()
    sampler.join()
    sampler.sample()  # after the run: its buffers released (reported, not compared)
    samples = [
        {"t": round(s[0] - t0, 2), "step": s[1], "rss_mb": s[2], "live_mb": s[3], "device_mb": s[4]}
        for s in sampler.samples
    ]
    row = {"placement": args.placement, "devices": jax.device_count(), "batch": config.batch_size}
    row |= {"steps": summary["step"], "epochs": summary["step"] / summary["steps_per_epoch"]}
    row |= {"seconds": time.perf_counter() - t0, "samples": samples}
    print_row(row | summarize(samples, args.warmup_steps or config.checkpoint_every_steps))
    if jax.process_count() == 1:
        for p in sorted(workdir.rglob("*"), reverse=True):  # the run's files: checkpoints, logs
            p.unlink() if p.is_file() else p.rmdir()
        workdir.rmdir()


def _growth_text(row: dict) -> str:
    met = "met" if row["rss_growth"] < TARGET_GROWTH else "MISSED"
    return f"{100 * row['rss_growth']:+.1f}% (< {100 * TARGET_GROWTH:.0f}% {met})"


COLUMNS = [
    "placement",
    "devices",
    "batch",
    "steps",
    Col("epochs", "epochs", "{:.0f}"),
    Col("RSS at warm-up (MB)", "rss_base_mb", "{:.0f}"),
    Col("RSS at the end (MB)", "rss_end_mb", "{:.0f}"),
    Col("min / peak after warm-up (MB)", lambda r: f"{r['rss_min_after_warmup_mb']:.0f} / {r['rss_peak_mb']:.0f}"),
    Col("growth after warm-up", _growth_text),
    Col("slope (MB / 1000 steps)", "rss_slope_mb_per_1000_steps", "{:+.1f}"),
    Col("live arrays (MB) warm-up / end", lambda r: f"{r['live_base_mb']:.0f} / {r['live_end_mb']:.0f}"),
    Col(
        "device in use (MB)",
        lambda r: (
            "n/a (CPU)"
            if r["device_in_use_base_mb"] is None
            else f"{r['device_in_use_base_mb']:.0f} / {r['device_in_use_end_mb']:.0f}"
        ),
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--samples", type=int, default=64, help="training samples (+16 validation)")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--warmup-steps", type=int, default=0, help="baseline step (default: the first checkpoint)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--placements", nargs="+", default=["host", "device"], choices=["host", "device"])
    parser.add_argument("--cache", default=str(dataset_cache()))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--resummarize", metavar="JSON", help="recompute the table from a results file's samples")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--placement", default="host", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.resummarize:
        report = json.loads(Path(args.resummarize).read_text())
        warmup = report["meta"]["args"].get("warmup_steps") or report["meta"]["args"]["checkpoint_every"]
        rows = [{**r, **summarize(r["samples"], warmup)} for r in report["rows"]]
        table = print_table(rows, COLUMNS, "Memory over a long run (tiny preset)")
        report |= {"rows": rows, "table": table}
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        return None
    if args.steps <= args.checkpoint_every:
        parser.error("--steps must exceed --checkpoint-every (the warm-up ends at the first checkpoint)")
    passed = ["--steps", args.steps, "--batch", args.batch, "--samples", args.samples, "--cache", args.cache]
    passed += ["--checkpoint-every", args.checkpoint_every, "--warmup-steps", args.warmup_steps, "--every", args.every]
    rows = []
    for placement in args.placements:
        print(f"{placement}: {args.steps} steps ...", flush=True)
        rows.append(child_row(__file__, [*passed, "--placement", placement]))
        print(f"{placement}: {rows[-1]['seconds']:.0f} s, RSS growth {100 * rows[-1]['rss_growth']:+.1f}%", flush=True)
    table = print_table(rows, COLUMNS, "Memory over a long run (tiny preset)")
    write_results(args.out, {"rows": rows, "target_growth": TARGET_GROWTH}, table, args)


if __name__ == "__main__":
    main()
