"""The one command for a short accelerator slot: speed against PyTorch on the same device, and
InversionNet trained to quality inside the budget.

    python benchmarks/accelerator.py --out DIR [--budget-s 360]
    python benchmarks/accelerator.py --quick --out /tmp/acc --budget-s 240   # every part, shrunk, on a CPU (~2 min)

Parts, in this order, each in its own process with its own time limit (a failure or a timeout loses
that part only):
  1. step_time.py: the full-size train and inference step, float32 and bfloat16, batch 64 and 256,
     model FLOP utilization against the measured matmul peak and the device's datasheet bf16 peak, and
     the same steps in the PyTorch reference on the same device, alternating rounds (skipped, with the
     reason, when no torch with this device is importable; JAX does not preallocate the device);
  2. timed_reproduction.py: FlatVel-A generated on the device (24,000 samples when the budget allows),
     the full InversionNet trained with the reference's optimizer and loss for as many epochs as fit,
     evaluated on held-out samples, beside the OpenFWI benchmark page's FlatVel-A row;
  3. train_throughput.py: the training loop against its isolated step, device-resident data;
  4. generation.py: the fast solver at 256 models per call;
  5. gradient.py: FWI gradients per second, batched: the hand-written adjoint against JAX's reverse mode.
A part's time limit is its share of the budget still left when it starts (parts that end early leave
their time to the next). After each part, DIR/accelerator.json and DIR/accelerator.md hold every
finished part's status, seconds and table; each part's log is DIR/<part>.log and its JSON
DIR/<part>.json. This process never imports JAX (it would hold the accelerator's memory from the parts).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _harness import Col, jax_facts, print_table, read_table, table_lines, write_results

HERE = Path(__file__).resolve().parent
COLUMNS = ["part", "status", Col("seconds", "seconds", "{:.0f}"), Col("limit (s)", "limit_s", "{:.0f}")]
BUDGET_FLAG = "{budget}"  # replaced by the part's own time limit, less a margin for its start and report


def parts(quick: bool, out: Path) -> list[tuple[str, list[str], float]]:
    """(name, arguments of benchmarks/<name>.py, share of the budget)."""

    def j(name: str) -> list[str]:
        return ["--out", str(out / f"{name}.json")]

    if quick:  # every code path at the smallest sizes: tiny widths, a few steps (the test suite runs this)
        return [
            ("step_time", ["--dims", "tiny", "--batches", "2", "--dtypes", "float32", "bfloat16", "--reps", "1",
                           "--steps", "1", *j("step_time")], 0.25),
            ("timed_reproduction", ["--quick", "--quiet", "--budget-s", BUDGET_FLAG, *j("timed_reproduction")], 0.3),
            ("train_throughput", ["--presets", "tiny", "--placements", "device:float32", "--samples", "96",
                                  "--eval-every", "2", "--intervals", "1", "--step-reps", "2",
                                  *j("train_throughput")], 0.25),
            ("generation", ["--models", "4", "--rounds", "1", "--variants", "fast", "--no-deepwave",
                            *j("generation")], 0.1),
            ("gradient", ["--models", "2", "--rounds", "1", "--no-deepwave", "--no-autodiff", *j("gradient")], 0.1),
        ]  # fmt: skip
    return [
        ("step_time", ["--batches", "64", "256", "--dtypes", "float32", "bfloat16", "--reps", "3", "--steps", "5",
                       *j("step_time")], 0.28),
        ("timed_reproduction", ["--quiet", "--budget-s", BUDGET_FLAG, *j("timed_reproduction")], 0.42),
        ("train_throughput", ["--presets", "openfwi", "--placements", "device:float32", "device:bfloat16",
                              "--samples", "2624", "--batch", "256", "--log-every", "10",
                              *j("train_throughput")], 0.14),
        ("generation", ["--models", "256", "--rounds", "3", "--variants", "fast", "--no-deepwave",
                        *j("generation")], 0.08),
        ("gradient", ["--models", "64", "--rounds", "2", "--no-deepwave", *j("gradient")], 0.08),
    ]  # fmt: skip


def run_part(name: str, args: list[str], limit: float, out: Path) -> dict:
    inner = max(30.0, limit - 20.0)  # a part that sizes itself to a budget ends before it is stopped
    cmd = [sys.executable, str(HERE / f"{name}.py"), *(f"{inner:.0f}" if x == BUDGET_FLAG else x for x in args)]
    print(f"== {name} (at most {limit:.0f} s): {' '.join(Path(c).name if '/' in c else c for c in cmd)}", flush=True)
    log, part_json = out / f"{name}.log", out / f"{name}.json"
    part_json.unlink(missing_ok=True)  # a table left by an earlier run must not stand for this one
    t = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), PYTHONUNBUFFERED="1")
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # PyTorch's sidecar shares the device
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=limit)
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            # SIGTERM first (the part and its sidecars clean up: a generated set is deleted), then SIGKILL.
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            status = f"timed out after {limit:.0f} s"
    seconds = time.perf_counter() - t
    table = read_table(part_json)
    print("\n".join(table) if table else log.read_text()[-2000:])
    print(f"-- {name}: {status} in {seconds:.0f} s (log: {log})\n", flush=True)
    return {"part": name, "status": status, "seconds": seconds, "limit_s": limit, "json": str(part_json),
            "table": table}  # fmt: skip


def write_summary(out: Path, results: list[dict], header: str, a: argparse.Namespace) -> list[str]:
    """DIR/accelerator.json and DIR/accelerator.md with every part finished so far."""
    table = table_lines(results, COLUMNS)
    md = [f"# {header}", "", *table, ""]
    for r in results:
        md += [f"## {r['part']}: {r['status']}", "", *(r["table"] or ["(no table: see the part's log)"]), ""]
    (out / "accelerator.md").write_text("\n".join(md))
    write_results(out / "accelerator.json", {"quick": a.quick, "budget_s": a.budget_s, "parts": results}, table, args=a)
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the logs, JSON and the summary")
    p.add_argument("--budget-s", type=float, default=360.0, help="total time budget, shared by the parts")
    p.add_argument("--quick", action="store_true", help="every part, shrunk: checks the script on a CPU")
    p.add_argument("--parts", nargs="+", help="run only these parts (default: all)")
    a = p.parse_args()
    out = Path(a.out).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    todo = parts(a.quick, out)
    if a.parts:
        unknown = set(a.parts) - {name for name, _, _ in todo}
        if unknown:
            p.error(f"unknown part(s) {sorted(unknown)}; choose from {[name for name, _, _ in todo]}")
        todo = [t for t in todo if t[0] in a.parts]
    facts = jax_facts()
    device = f"{facts['device_count']} x {facts['device_kind']} ({facts['backend']})"
    header = f"accelerator benchmark on {device}, {os.cpu_count()} CPU cores, budget {a.budget_s:.0f} s"
    print(header + "\n", flush=True)
    t0, results = time.perf_counter(), []
    for k, (name, args, share) in enumerate(todo):
        left = a.budget_s - (time.perf_counter() - t0)
        limit = max(60.0, left * share / sum(s for _, _, s in todo[k:]))
        results.append(run_part(name, args, limit, out))
        write_summary(out, results, header, a)
    print_table(results, COLUMNS, header)
    print(f"wrote {out / 'accelerator.md'} and {out / 'accelerator.json'}")
    if any(r["status"] != "ok" for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
