"""Data-generation throughput: fwi_jax exact / fast modes against deepwave, alternating in one run.

    python benchmarks/generation.py [--models 16] [--rounds 5] [--out benchmarks/results/generation.json]

deepwave needs PyTorch; it runs in a separate interpreter (on these machines a Python 3.11 venv with
torch==2.13.0 and deepwave) named by --torch-python, else the one fwi_jax.torchenv finds
($FWI_JAX_TORCH_PYTHON), kept alive as a sidecar. Each round times every fwi_jax variant, then
deepwave, on the same models, so a ratio compares calls made seconds apart (this VM's speed drifts
by tens of % within minutes): the table gives the median seconds over rounds and the median and
range of the per-round ratios. deepwave's receiver data are aligned to the OpenFWI convention
(negated, one sample earlier) before comparing.

Prints a table and writes JSON: samples/s for each propagator at 1 and N models per call, the
throughput ratio to deepwave, and the relative L2 difference of the receiver data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from fwi_jax.cpu_runtime import use_all_cpu_cores, use_transparent_hugepages

use_all_cpu_cores()  # before JAX is imported: one device per core

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _sidecar import TorchSidecar  # noqa: E402

from fwi_jax import torchenv  # noqa: E402
from fwi_jax.data import velocity  # noqa: E402
from fwi_jax.physics import forward  # noqa: E402

HERE = Path(__file__).resolve().parent
VARIANTS = {"exact": ("exact", {}), "fast": ("fast", {}), "fast (PML 10)": ("fast", {"pml": 10})}
DEEPWAVE = "deepwave (PML 20)"


def benchmark_models(n: int) -> np.ndarray:
    """Half slow-top FlatVel-A, half CurveFault-B maps (fast tops are the sponge's worst case)."""
    a = velocity.generate("flatvel-a", n - n // 2, seed=11)
    b = velocity.generate("curvefault-b", n // 2, seed=12)
    return np.concatenate([a, b])


def time_call(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def align_deepwave(raw: np.ndarray) -> np.ndarray:
    aligned = np.zeros_like(raw)
    aligned[:, :, :-1] = -raw[:, :, 1:]  # opposite sign, one sample of lag
    return aligned


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=16, help="models per call for the batched rows")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (each times every propagator once)")
    p.add_argument(
        "--torch-python",
        default="",
        help="interpreter with torch + deepwave (default: as fwi_jax.torchenv finds PyTorch)",
    )
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--no-deepwave", action="store_true", help="time fwi_jax only")
    p.add_argument("--out", default=str(HERE / "results" / "generation.json"))
    a = p.parse_args()
    if a.rounds < 1 or a.models < 1:
        p.error("--rounds and --models must be >= 1")

    models = benchmark_models(a.models)
    batches = [1, a.models]
    calls = {
        (name, bs): (lambda mode=mode, kw=kw, bs=bs: np.asarray(forward(models[:bs], mode=mode, **kw)))
        for name, (mode, kw) in VARIANTS.items()
        for bs in batches
        if name in a.variants
    }
    data = {name: calls[name, a.models]() for name in a.variants}  # compiles every variant once
    for name, bs in calls:
        if bs != a.models:
            calls[name, bs]()

    python = None if a.no_deepwave else torchenv.torch_python(a.torch_python)
    dw, dw_info = None, None
    with tempfile.TemporaryDirectory() as tmp:
        if python is None:
            print("deepwave not run: pass --torch-python or set FWI_JAX_TORCH_PYTHON (see README)", file=sys.stderr)
        else:
            np.save(Path(tmp) / "models.npy", models)
            dw = TorchSidecar("_deepwave_sidecar.py", python=python)
            dw_info = dw.ask(cmd="setup", models=str(Path(tmp) / "models.npy"))
            dw.ask(cmd="data", batch=a.models, out=str(Path(tmp) / "dw.npy"))
            data["deepwave"] = align_deepwave(np.load(Path(tmp) / "dw.npy"))
        seconds: dict[tuple[str, int], list[float]] = {key: [] for key in calls}
        for r in range(a.rounds):
            for key, fn in calls.items():
                seconds[key].append(time_call(fn))
            if dw is not None:
                for bs in batches:
                    seconds.setdefault((DEEPWAVE, bs), []).append(dw.ask(cmd="time", batch=bs)["seconds"])
            print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
        if dw is not None:
            dw.close()

    rows = []
    for (name, bs), secs in seconds.items():
        row = {
            "propagator": name if name == DEEPWAVE else f"fwi_jax {name}",
            "models_per_call": bs,
            "seconds": float(np.median(secs)),
            "seconds_per_round": secs,
            "samples_per_s": bs / float(np.median(secs)),
        }
        if (DEEPWAVE, bs) in seconds:  # per-round ratios of samples/s
            ratios = np.asarray(seconds[DEEPWAVE, bs]) / np.asarray(secs)
            row |= {
                "ratio_vs_deepwave": float(np.median(ratios)),
                "ratio_min": float(ratios.min()),
                "ratio_max": float(ratios.max()),
            }
        rows.append(row)

    diffs = {}
    if "exact" in data and "fast" in data:
        diffs["fast_vs_exact"] = rel_l2(data["fast"], data["exact"])
    if "fast (PML 10)" in data and "fast" in data:
        diffs["fast_pml10_vs_fast"] = rel_l2(data["fast (PML 10)"], data["fast"])
    if "deepwave" in data and {"exact", "fast"} <= data.keys():
        half = a.models - a.models // 2
        diffs |= {
            "exact_vs_deepwave_flatvel_a": rel_l2(data["exact"][:half], data["deepwave"][:half]),
            "exact_vs_deepwave_curvefault_b": rel_l2(data["exact"][half:], data["deepwave"][half:]),
            "fast_vs_deepwave": rel_l2(data["fast"], data["deepwave"]),
        }

    print(
        f"\ndevices: {jax.device_count()} x {jax.devices()[0].platform}; models: {a.models} "
        f"(half FlatVel-A, half CurveFault-B); one sample = 5 shots x 1000 steps; {a.rounds} rounds\n"
    )
    print(f"| {'propagator':<24} | models/call | s/call | samples/s | vs deepwave (range over rounds) |")
    print(f"|{'-' * 26}|-------------|--------|-----------|---------------------------------|")
    for r in rows:
        ratio = "-"
        if "ratio_vs_deepwave" in r:
            ratio = f"{r['ratio_vs_deepwave']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
        print(
            f"| {r['propagator']:<24} | {r['models_per_call']:>11} | {r['seconds']:>6.2f} | "
            f"{r['samples_per_s']:>9.2f} | {ratio:>31} |"
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
                "rounds": a.rounds,
                "deepwave_sidecar": dw_info,
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
