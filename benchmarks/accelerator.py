"""One command for an accelerator host: step time, training throughput and data generation.

    python benchmarks/accelerator.py --out DIR [--budget-s 480] [--quick]

Runs, one after another (each in its own process, each with its share of the time budget):
  1. step_time.py: fwi_jax's full-size InversionNet train / inference step, float32 and bfloat16,
     batch 64 and 256 (no PyTorch needed);
  2. train_throughput.py: the real training loop against its isolated step with device-resident
     data (float32 and bfloat16 storage), full-size model, batch 256;
  3. generation.py: the generator's fast mode at 256 models per call.
Each part's table and log go to DIR/<part>.log and its JSON to DIR/<part>.json; DIR/accelerator.json
lists the parts with their status and seconds, and a combined table is printed at the end.
`--quick` shrinks every part to run on a laptop CPU in a few minutes (to check the script).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


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


def describe_device() -> tuple[str, str]:
    """Asked in a child process: JAX here would take the accelerator's memory from the parts."""
    code = (
        "import jax; d = jax.devices(); "
        "print(f'{len(d)} x {d[0].device_kind} ({jax.default_backend()})'); print(jax.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    device, version = out.stdout.strip().splitlines()[-2:]
    return device, version


def run_part(name: str, cmd: list[str], timeout: float, out: Path) -> dict:
    print(f"== {name} (at most {timeout:.0f} s): {' '.join(Path(c).name if '/' in c else c for c in cmd)}", flush=True)
    log = out / f"{name}.log"
    t = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), PYTHONUNBUFFERED="1")
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - t
    table = [line for line in log.read_text().splitlines() if line.startswith("|")]
    print("\n".join(table) if table else log.read_text()[-2000:])
    print(f"-- {name}: {status} in {seconds:.0f} s (log: {log})\n", flush=True)
    return {"part": name, "status": status, "seconds": seconds, "json": str(out / f"{name}.json"), "table": table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for the logs, JSON and the summary")
    p.add_argument("--budget-s", type=float, default=480.0, help="total time budget, shared by the parts")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script on a CPU")
    a = p.parse_args()
    out = Path(a.out).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    device, jax_version = describe_device()
    print(f"accelerator benchmark on {device}, {os.cpu_count()} CPU cores; budget {a.budget_s:.0f} s\n", flush=True)
    results = [run_part(name, cmd, a.budget_s * share, out) for name, cmd, share in parts(a.quick, out)]
    summary = {
        "device": device,
        "cpus": os.cpu_count(),
        "jax": jax_version,
        "python": platform.python_version(),
        "quick": a.quick,
        "parts": results,
    }
    (out / "accelerator.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {', '.join(f'{r["part"]} {r["status"]} ({r["seconds"]:.0f} s)' for r in results)}")
    print(f"wrote {out / 'accelerator.json'}")
    if any(r["status"] != "ok" for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
