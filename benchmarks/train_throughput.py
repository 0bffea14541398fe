"""Training throughput: the real training loop against its isolated jitted step, per data placement.

    python benchmarks/train_throughput.py [--presets tiny openfwi] [--samples 1088] [--out FILE]
        [--placements host:0 host:2 device:float32 device:bfloat16] [--batch B] [--log-every N]
        [--eval-every N] [--intervals N] [--step-reps N]
    python benchmarks/train_throughput.py --presets tiny --placements host:0 device:float32 --samples 128 \
        --eval-every 8 --intervals 3 --step-reps 4 --out /tmp/tt.json          # a check, a few minutes

About 27 minutes at the defaults on a 2-core CPU (8 rows, one child process each).

For each model preset and placement (host with 0 and N grain workers, device with float32 and
bfloat16 storage), one child process runs `train_and_evaluate` (the trainer's own code path: real
.npy files generated once by fwi_jax, logging and checkpoints at the config's cadence, evaluation
every --eval-every steps: the tiny preset's is its epoch) and reads its samples/s from the run's own
metrics (evaluation is excluded as in the run log). The same child times the jitted train step alone
on batches already on the devices: loop / step says how much the input path and the loop cost. Host
rows also time the raw-read pipeline alone. Peak RSS of each child is recorded; for device
placement, the peak RSS growth while the split loads onto the devices (measured alone, before the
loop) is compared with its stored size.

This VM's speed drifts by tens of % over minutes, so the step alone is timed at every evaluation
of the run (the loop leaves evaluation out of its rates, so this costs the loop nothing): the loop's
rate between two evaluations is divided by the mean of the step rates timed at those two, and a row
reports the median of those ratios and their range (_harness.Ratio; each of them is in the JSON).
The interval before the first evaluation (compilation, the data's load) is not timed.

Prints the roofline facts (FLOPs and bytes per sample, host pipeline samples/s per core, the
samples/s an accelerator of --peak-tflops would need), a table, and writes the rows as JSON.
Targets: device loop / step >= 0.95; host >= 0.90 wherever the pipeline's rate is >= 3x the
step's; device data RSS <= 1.2x its stored size.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from _harness import prepare_host

prepare_host(__name__)  # first: huge pages, as `python -m fwi_jax.train` runs; the children inherit them

# ruff: noqa: E402
from _harness import Col, Ratio, child_row, median, print_row, print_table, write_results

from fwi_jax.fileio import read_jsonl
from fwi_jax.paths import dataset_cache

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "train_throughput.json"
BYTES_PER_SAMPLE = (5 * 1000 * 70 + 70 * 70) * 4  # float32 seismic + velocity, as on disk
# Per preset: forced CPU devices, batch, logging window, evaluation interval (the step alone is timed at
# each), intervals timed (+1 for compilation and the load), steps timed alone at each evaluation.
PRESETS = {
    "tiny": {"devices": 8, "batch": 16, "log_every": 50, "eval_every": 64, "intervals": 6, "step_reps": 24},
    "openfwi": {"devices": 1, "batch": 8, "log_every": 5, "eval_every": 15, "intervals": 4, "step_reps": 6},
}
PLACEMENTS = ["host:0", "host:2", "device:float32", "device:bfloat16"]  # host:WORKERS | device:STORAGE


def _target_text(row: dict) -> str:
    return "-" if row["target"] is None else f">= {row['target']:.2f} {'met' if row['meets_target'] else 'MISSED'}"


COLUMNS = [
    "model",
    "devices",
    "batch",
    "placement",
    Col("storage", "storage_dtype"),
    "workers",
    Col("pipeline samples/s", "pipeline_samples_per_s", "{:.0f}"),
    Col("loop samples/s", "loop_samples_per_s", "{:.1f}"),
    Col("step samples/s", "step_samples_per_s", "{:.1f}"),
    Col("loop / step", "loop_over_step", "{:.2f}"),
    Col("target", _target_text),
    Col("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
    Col("data RSS / stored", "data_rss_over_stored", "{:.2f}"),
]


def parse_placement(text: str) -> tuple[str, str, int]:
    kind, _, arg = text.partition(":")
    if kind == "host" and arg.isdigit():
        return "host", "float32", int(arg)
    if kind == "device" and arg in ("float32", "bfloat16"):
        return "device", arg, 0
    raise argparse.ArgumentTypeError(f"placement {text!r}: use host:WORKERS or device:float32|bfloat16")


def row_config(preset: str, placement: str, storage: str, workers: int, args: argparse.Namespace):
    from fwi_jax.config import default_config

    overrides = (("batch", args.batch), ("log_every", args.log_every), ("eval_every", args.eval_every))
    overrides += (("intervals", args.intervals),)
    p = {**PRESETS[preset], **{k: v for k, v in overrides if v}}
    c = default_config()
    c.data.source, c.data.family, c.data.mode = "generated", "flatvel-a", "fast"
    c.data.num_samples, c.data.file_size, c.data.val_files = args.samples, 64, 1
    c.data.cache_dir = args.cache
    c.data.placement, c.data.storage_dtype, c.data.num_workers = placement, storage, workers
    c.model.dims, c.batch_size, c.log_every_steps = preset, p["batch"], p["log_every"]
    c.eval_every_steps, c.num_train_steps = p["eval_every"], p["eval_every"] * (p["intervals"] + 1)
    c.progress, c.tensorboard, c.num_plot_samples = False, False, 0
    return c


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _load_rss_mb(config, source) -> float:
    """Peak RSS growth while the training split is loaded onto the devices (Linux: VmHWM reset first)."""
    from fwi_jax import parallel
    from fwi_jax.data.device import DeviceBatches

    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    before = _status_mb("VmRSS")
    data = DeviceBatches(source, config.batch_size, 0, parallel.make_mesh(), config.data.storage_dtype, progress=False)
    peak = _status_mb("VmHWM")
    data.close()
    return peak - before


def _pipeline_rate(config, source, batches: int = 12) -> float:
    from fwi_jax.data import pipeline

    d = config.data
    it = pipeline.train_batches(
        source, config.batch_size, 0, 0, batches + 2, num_threads=d.num_threads, num_workers=d.num_workers
    )
    next(it), next(it)  # start-up excluded
    t, n = time.perf_counter(), 0
    for batch in it:
        n += len(batch["raw_seismic"])
    rate = n / (time.perf_counter() - t)
    it.close()
    return rate


class StepTimer:
    """The jitted train step alone on 4 batches already on the devices (compiled once, timed on demand)."""

    def __init__(self, config, source):
        import jax
        import numpy as np

        from fwi_jax import parallel
        from fwi_jax.data import pipeline
        from fwi_jax.training.steps import make_steps

        mesh = parallel.make_mesh()
        self.steps = make_steps(config, source.spec, mesh, steps_per_epoch=100)
        self.state = self.steps.init()
        read = pipeline.read_raw if config.data.placement == "host" else pipeline.read_normalized
        b = self.batch_size = config.batch_size
        self.batches = [parallel.global_batch(read(source, np.arange(k * b, (k + 1) * b)), mesh) for k in range(4)]
        self.flops_per_sample = self.steps.train.lower(self.state, self.batches[0]).cost_analysis().get("flops", 0) / b
        self.state, m = self.steps.train(self.state, self.batches[0])
        jax.block_until_ready(m)

    def rate(self, reps: int) -> float:
        """Samples/s over ``reps`` steps, after one untimed step: timed from the first step after an
        evaluation, the full model's 6 steps ran 10-20% below its own loop (loop / step up to 1.21)."""
        import jax

        self.state, m = self.steps.train(self.state, self.batches[-1])
        jax.block_until_ready(m)
        t = time.perf_counter()
        for k in range(reps):
            self.state, m = self.steps.train(self.state, self.batches[k % 4])
        jax.block_until_ready((self.state, m))
        return reps * self.batch_size / (time.perf_counter() - t)


def _interval_loop_rates(metrics: Path, evals: list[int], batch_size: int) -> list[float]:
    """Samples/s of the loop between consecutive evaluation steps ``evals``, from the run's own windows
    (a window's rate covers the steps since the previous record, train or val: evaluation is left out)."""
    spans = [[0, 0.0] for _ in evals[1:]]  # [steps, seconds] per interval
    previous = 0
    for record in read_jsonl(metrics):
        step = record["step"]
        if record.get("split") == "train" and step > previous:
            for k, (lo, hi) in enumerate(zip(evals[:-1], evals[1:], strict=True)):
                if lo < step <= hi:
                    spans[k][0] += step - previous
                    spans[k][1] += (step - previous) / record["steps_per_s"]
        previous = step
    return [batch_size * n / t for n, t in spans]


def child(args: argparse.Namespace) -> None:
    """One row: one training run with the step timed alone at each evaluation; prints one JSON line."""
    import jax

    from fwi_jax.data.device import dataset_bytes
    from fwi_jax.data.open import open_sources
    from fwi_jax.training import loop

    config = row_config(args.preset, args.placement, args.storage, args.workers, args)
    train_src, _, spec = open_sources(config)
    row = {"placement": args.placement, "storage_dtype": args.storage, "workers": args.workers}
    row |= {"model": args.preset, "batch": config.batch_size, "devices": jax.device_count()}
    row["device_kind"] = jax.devices()[0].device_kind
    if args.placement == "host":
        row["pipeline_samples_per_s"] = _pipeline_rate(config, train_src)
    else:
        row["load_rss_mb"] = _load_rss_mb(config, train_src)
    reps = args.step_reps or PRESETS[args.preset]["step_reps"]
    timer = StepTimer(config, train_src)
    row["flops_per_sample"] = timer.flops_per_sample
    evals, steps, evaluate = [], [], loop.evaluate

    def evaluate_then_time_step(state, *a, **k):  # inside the evaluation pause the loop does not time
        out = evaluate(state, *a, **k)
        evals.append(int(state.step))
        steps.append(timer.rate(reps))
        return out

    loop.evaluate = evaluate_then_time_step
    with tempfile.TemporaryDirectory() as workdir:
        summary = loop.train_and_evaluate(config, workdir)
        loops = _interval_loop_rates(Path(workdir) / "metrics.jsonl", evals, config.batch_size)
    ratio = Ratio.of(loops, [(a + b) / 2 for a, b in zip(steps[:-1], steps[1:], strict=True)])
    row["loop_samples_per_s"], row["step_samples_per_s"] = median(loops), median(steps)
    row |= ratio.fields("loop_over_step")
    row["loop_over_step_per_interval"], row["loop_samples_per_s_per_interval"] = list(ratio.per_round), loops
    row["step_samples_per_s_at_evals"], row["eval_steps"] = steps, evals
    row["peak_rss_mb"] = _rss_mb()
    row["stored_mb"] = dataset_bytes(len(train_src), spec, args.storage) / 2**20
    row["steps"] = int(summary["step"])
    row["train_samples"] = len(train_src)
    print_row(row)


def run_row(args, preset: str, placement: str, storage: str, workers: int) -> dict:
    env = dict(os.environ)
    devices = PRESETS[preset]["devices"]
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    flags = ["--preset", preset, "--placement", placement, "--storage", storage, "--workers", workers]
    flags += ["--samples", args.samples, "--cache", args.cache, "--batch", args.batch, "--log-every", args.log_every]
    flags += ["--eval-every", args.eval_every, "--intervals", args.intervals, "--step-reps", args.step_reps]
    t = time.perf_counter()
    row = child_row(__file__, flags, env)
    print(
        f"  {preset} {placement} {storage} workers={workers}: loop {row['loop_samples_per_s']:.1f}, "
        f"step {row['step_samples_per_s']:.1f} samples/s ({time.perf_counter() - t:.0f} s)",
        flush=True,
    )
    return row


def check_targets(rows: list[dict]) -> None:
    for r in rows:
        if r["placement"] == "device":
            r["target"] = 0.95
            r["data_rss_over_stored"] = r["load_rss_mb"] / r["stored_mb"]
        else:
            fast_enough = r["pipeline_samples_per_s"] >= 3 * r["step_samples_per_s"]
            r["target"] = 0.90 if fast_enough else None
        r["meets_target"] = None if r["target"] is None else bool(r["loop_over_step"] >= r["target"])


def print_report(rows: list[dict], args) -> list[str]:
    """Prints the roofline facts and the table; returns the table's lines."""
    cores = os.cpu_count() or 1
    host = [r["pipeline_samples_per_s"] for r in rows if r["placement"] == "host" and r["workers"] == 0]
    print(f"\nroofline facts ({cores} CPU cores, {platform.processor() or 'cpu'}):")
    print(f"  bytes per sample on disk (float32): {BYTES_PER_SAMPLE / 2**20:.2f} MiB")
    for preset in dict.fromkeys(r["model"] for r in rows):
        flops = next(r["flops_per_sample"] for r in rows if r["model"] == preset)
        need = args.peak_tflops * 1e12 * args.utilization / flops if flops else float("nan")
        print(
            f"  {preset}: {flops / 1e9:.2f} GFLOP per sample per train step (XLA cost analysis); an accelerator of "
            f"{args.peak_tflops:.0f} bf16 TFLOP/s at {args.utilization:.0%} would train {need:,.0f} samples/s "
            f"= {need * BYTES_PER_SAMPLE / 2**30:.1f} GiB/s of float32 input"
        )
    if host:
        print(f"  host raw-read pipeline (0 workers): {max(host):.0f} samples/s = {max(host) / cores:.0f} per core")
    return print_table(rows, COLUMNS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--placements", nargs="+", type=parse_placement, default=[parse_placement(x) for x in PLACEMENTS])
    p.add_argument("--samples", type=int, default=1088, help="generated samples (the last 64 are validation)")
    p.add_argument("--batch", type=int, default=0, help="global batch (default: the preset's)")
    p.add_argument("--log-every", type=int, default=0, help="logging window in steps (default: the preset's)")
    p.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (default: the preset's)")
    p.add_argument("--intervals", type=int, default=0, help="intervals between evaluations timed (default: preset's)")
    p.add_argument("--step-reps", type=int, default=0, help="steps timed alone at each evaluation (default: preset's)")
    p.add_argument("--cache", default=str(dataset_cache()))
    p.add_argument("--peak-tflops", type=float, default=989.0, help="accelerator bf16 peak (H100 SXM: 989)")
    p.add_argument("--utilization", type=float, default=0.3)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    p.add_argument("--placement", help=argparse.SUPPRESS)
    p.add_argument("--storage", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    rows = [run_row(args, preset, *placement) for preset in args.presets for placement in args.placements]
    check_targets(rows)
    table = print_report(rows, args)
    write_results(args.out, {"rows": rows}, table, args=args)


if __name__ == "__main__":  # not at import: grain spawns worker processes that re-import this file
    main()
