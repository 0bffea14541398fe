"""One command for an accelerator host: step time, training throughput and data generation.

    python benchmarks/accelerator.py --out DIR [--budget-s 480] [--quick]
    python benchmarks/accelerator.py --quick --out /tmp/acc         # a check: 5-8 minutes on a 2-core CPU

Runs, one after another (each in its own process, each with its share of the time budget):
  1. step_time.py: fwi_jax's full-size InversionNet train / inference step, float32 and bfloat16,
     batch 64 and 256 (no PyTorch needed);
  2. train_throughput.py: the real training loop against its isolated step with device-resident
     data (float32 and bfloat16 storage), full-size model, batch 256;
  3. generation.py: the generator's fast mode at 256 models per call.
Each part's log goes to DIR/<part>.log and its JSON to DIR/<part>.json; the part's table is shown
from its JSON (its "table" lines) after it ends, or the log's tail when it has none. DIR/accelerator.json
lists the parts with their status, seconds and tables, and a table of the parts is printed at the end.
`--quick` shrinks every part to run on a laptop CPU in a few minutes (to check the script). This
process never imports JAX (it would hold the accelerator's memory from the parts).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _harness import Col, jax_facts, print_table, read_table, write_results

HERE = Path(__file__).resolve().parent
COLUMNS = ["part", "status", Col("seconds", "seconds", "{:.0f}")]


def parts(quick: bool, out: Path) -> list[tuple[str, list[str], float]]:
    """(name, command, share of the budget)."""
    py = sys.executable
    if quick:
        return [
            ("step_time", [py, str(HERE / "step_time.py"), "--no-torch", "--batches", "2", "--dtypes", "float32",
                           "bfloat16", "--reps", "1", "--steps", "1", "--out", str(out / "step_time.json")], 0.4),
            ("train_throughput", [py, str(HERE / "train_throughput.py"), "--presets", "tiny", "--placements",
                                  "device:float32", "device:bfloat16", "--samples", "128", "--eval-every", "8",
                                  "--intervals", "3", "--step-reps", "4",
                                  "--out", str(out / "train_throughput.json")], 0.4),
            ("generation", [py, str(HERE / "generation.py"), "--models", "4", "--rounds", "1", "--variants", "fast",
                            "--no-deepwave", "--out", str(out / "generation.json")], 0.2),
        ]  # fmt: skip
    return [
        ("step_time", [py, str(HERE / "step_time.py"), "--no-torch", "--batches", "64", "256", "--dtypes", "float32",
                       "bfloat16", "--reps", "3", "--steps", "5", "--out", str(out / "step_time.json")], 0.4),
        ("train_throughput", [py, str(HERE / "train_throughput.py"), "--presets", "openfwi", "--placements",
                              "device:float32", "device:bfloat16", "--samples", "2624", "--batch", "256",
                              "--log-every", "10", "--out", str(out / "train_throughput.json")], 0.4),
        ("generation", [py, str(HERE / "generation.py"), "--models", "256", "--rounds", "3", "--variants", "fast",
                        "--no-deepwave", "--out", str(out / "generation.json")], 0.2),
    ]  # fmt: skip


def run_part(name: str, cmd: list[str], timeout: float, out: Path) -> dict:
    print(f"== {name} (at most {timeout:.0f} s): {' '.join(Path(c).name if '/' in c else c for c in cmd)}", flush=True)
    log, part_json = out / f"{name}.log", out / f"{name}.json"
    part_json.unlink(missing_ok=True)  # a table left by an earlier run must not stand for this one
    t = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), PYTHONUNBUFFERED="1")
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - t
    table = read_table(part_json)
    print("\n".join(table) if table else log.read_text()[-2000:])
    print(f"-- {name}: {status} in {seconds:.0f} s (log: {log})\n", flush=True)
    return {"part": name, "status": status, "seconds": seconds, "json": str(part_json), "table": table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the logs, JSON and the summary")
    p.add_argument("--budget-s", type=float, default=480.0, help="total time budget, shared by the parts")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script on a CPU")
    a = p.parse_args()
    out = Path(a.out).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    facts = jax_facts()
    device = f"{facts['device_count']} x {facts['device_kind']} ({facts['backend']})"
    print(f"accelerator benchmark on {device}, {os.cpu_count()} CPU cores; budget {a.budget_s:.0f} s\n", flush=True)
    results = [run_part(name, cmd, a.budget_s * share, out) for name, cmd, share in parts(a.quick, out)]
    table = print_table(results, COLUMNS, "accelerator benchmark parts")
    write_results(out / "accelerator.json", {"quick": a.quick, "budget_s": a.budget_s, "parts": results}, table, args=a)
    if any(r["status"] != "ok" for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
