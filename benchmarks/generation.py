"""Data-generation throughput: fwi_jax exact / fast modes against deepwave, in one run.

    python benchmarks/generation.py [--models 16] [--repeats 2] [--out benchmarks/results/generation.json]

deepwave needs PyTorch; it runs in a separate interpreter (on these machines a Python 3.11 venv
with torch==2.13.0 and deepwave) named by --torch-python or $FWI_JAX_TORCH_PYTHON. Its receiver
data are aligned to the OpenFWI convention (negated, one sample earlier) before comparing.

Prints a table and writes JSON: samples/s for each propagator at 1 and N models per call, the
throughput ratio to deepwave, and the relative L2 difference of the receiver data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fwi_jax.hostdevices import use_all_cpu_cores, use_transparent_hugepages

use_all_cpu_cores()  # before JAX is imported: one device per core

import jax  # noqa: E402
import numpy as np  # noqa: E402

from fwi_jax.data import velocity  # noqa: E402
from fwi_jax.physics import forward  # noqa: E402

HERE = Path(__file__).resolve().parent


def benchmark_models(n: int) -> np.ndarray:
    """Half slow-top FlatVel-A, half CurveFault-B maps (fast tops are the sponge's worst case)."""
    a = velocity.generate("flatvel-a", n - n // 2, seed=11)
    b = velocity.generate("curvefault-b", n // 2, seed=12)
    return np.concatenate([a, b])


def time_jax(models: np.ndarray, mode: str, batch: int, repeats: int, **kw) -> tuple[float, np.ndarray]:
    """Seconds per call (median) and the data of the first `batch` models."""
    x = models[:batch]
    out = np.asarray(forward(x, mode=mode, **kw))  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = np.asarray(forward(x, mode=mode, **kw))
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def run_deepwave(models: np.ndarray, batches: list[int], python: str) -> tuple[dict, np.ndarray] | None:
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "models.npy", models)
        prefix = str(Path(tmp) / "dw")
        cmd = [
            python,
            str(HERE / "_deepwave_sidecar.py"),
            str(Path(tmp) / "models.npy"),
            prefix,
            *map(str, batches),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(f"deepwave sidecar failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}", file=sys.stderr)
            return None
        info = json.loads(Path(prefix + ".json").read_text())
        raw = np.load(prefix + ".npy")
    aligned = np.zeros_like(raw)
    aligned[:, :, :-1] = -raw[:, :, 1:]  # opposite sign, one sample of lag
    return info, aligned


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=16, help="models per call for the batched rows")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--torch-python",
        default=os.environ.get("FWI_JAX_TORCH_PYTHON", ""),
        help="interpreter with torch + deepwave (default $FWI_JAX_TORCH_PYTHON)",
    )
    p.add_argument("--out", default=str(HERE / "results" / "generation.json"))
    a = p.parse_args()

    models = benchmark_models(a.models)
    batches = [1, a.models]
    rows, data = [], {}
    variants = {"exact": ("exact", {}), "fast": ("fast", {}), "fast (PML 10)": ("fast", {"pml": 10})}
    for name, (mode, kw) in variants.items():
        for bs in batches:
            sec, out = time_jax(models, mode, bs, a.repeats, **kw)
            rows.append(
                {"propagator": f"fwi_jax {name}", "models_per_call": bs, "seconds": sec, "samples_per_s": bs / sec}
            )
            if bs == a.models:
                data[name] = out
    dw = run_deepwave(models, batches, a.torch_python) if a.torch_python else None
    if dw is None:
        print("deepwave not run: pass --torch-python or set FWI_JAX_TORCH_PYTHON (see README)", file=sys.stderr)
    else:
        info, data["deepwave"] = dw
        for bs in batches:
            sec = info["seconds"][str(bs)]
            rows.append(
                {
                    "propagator": "deepwave (PML 20)",
                    "models_per_call": bs,
                    "seconds": sec,
                    "samples_per_s": bs / sec,
                }
            )
        for r in rows:
            ref = next(
                x
                for x in rows
                if x["propagator"].startswith("deepwave") and x["models_per_call"] == r["models_per_call"]
            )
            r["ratio_vs_deepwave"] = r["samples_per_s"] / ref["samples_per_s"]

    diffs = {
        "fast_vs_exact": rel_l2(data["fast"], data["exact"]),
        "fast_pml10_vs_fast": rel_l2(data["fast (PML 10)"], data["fast"]),
    }
    if "deepwave" in data:
        half = a.models - a.models // 2
        diffs |= {
            "exact_vs_deepwave_flatvel_a": rel_l2(data["exact"][:half], data["deepwave"][:half]),
            "exact_vs_deepwave_curvefault_b": rel_l2(data["exact"][half:], data["deepwave"][half:]),
            "fast_vs_deepwave": rel_l2(data["fast"], data["deepwave"]),
        }

    print(
        f"\ndevices: {jax.device_count()} x {jax.devices()[0].platform}; models: {a.models} "
        "(half FlatVel-A, half CurveFault-B); one sample = 5 shots x 1000 steps\n"
    )
    print(f"| {'propagator':<24} | models/call | s/call | samples/s | vs deepwave |")
    print(f"|{'-' * 26}|-------------|--------|-----------|-------------|")
    for r in rows:
        ratio = f"{r['ratio_vs_deepwave']:.2f}x" if "ratio_vs_deepwave" in r else "-"
        print(
            f"| {r['propagator']:<24} | {r['models_per_call']:>11} | {r['seconds']:>6.2f} | "
            f"{r['samples_per_s']:>9.2f} | {ratio:>11} |"
        )
    print("\nrelative L2 difference of receiver data:")
    for k, v in diffs.items():
        print(f"  {k}: {v:.4%}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rows": rows,
                "relative_l2": diffs,
                "devices": jax.device_count(),
                "platform": jax.devices()[0].platform,
                "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    use_transparent_hugepages()  # the deepwave sidecar inherits it: both sides alike
    main()
