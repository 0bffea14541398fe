"""Data-generation throughput: fwi_jax exact / fast modes against deepwave, alternating in one run.

    python benchmarks/generation.py [--models 16] [--rounds 5] [--out benchmarks/results/generation.json]
    python benchmarks/generation.py --models 2 --rounds 1 --no-deepwave --out /tmp/gen.json   # a check, ~1 min

About a minute at the defaults on a 2-core CPU (compilation, then ~25 s of timed calls per 5 rounds).

deepwave needs PyTorch; it runs in a separate interpreter (on these machines a Python 3.11 venv with
torch==2.13.0 and deepwave) named by --torch-python, else the one fwi_jax.torchenv finds
($FWI_JAX_TORCH_PYTHON), kept alive as a sidecar. Each round times every fwi_jax variant, then
deepwave, on the same models, so a ratio compares calls made seconds apart (_harness.Ratio): the
table gives the median seconds over rounds and the median and range of the per-round ratios.
deepwave's receiver data are aligned to the OpenFWI convention (negated, one sample earlier)
before comparing.

Prints a table and writes JSON: samples/s for each propagator at 1 and N models per call, the
throughput ratio to deepwave, and the relative L2 difference of the receiver data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _harness import prepare_host

# First: one JAX device per core. No huge pages on either side: processes taking turns each fault
# fresh huge pages per call, which spread the per-round ratios 1.3-3.5x (docs/performance.md#generation).
prepare_host(__name__, all_cores=True, hugepages=False)

# ruff: noqa: E402
import jax
import numpy as np
from _deepwave import benchmark_models, columns, deepwave
from _harness import Ratio, alternate, median, print_table, timed, write_results

from fwi_jax.physics import forward

HERE = Path(__file__).resolve().parent
VARIANTS = {"exact": ("exact", {}), "fast": ("fast", {}), "fast (PML 10)": ("fast", {"pml": 10})}
DEEPWAVE = "deepwave (PML 20)"
COLUMNS = columns("samples/s", "samples_per_s", "vs deepwave (range over rounds)")


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

    with deepwave(models, a.torch_python, not a.no_deepwave) as dw:
        sides = {key: (lambda fn=fn: timed(fn)) for key, fn in calls.items()}
        if dw is not None:
            data["deepwave"] = align_deepwave(dw.get("data", batch=a.models))
            sides |= {(DEEPWAVE, bs): (lambda bs=bs: dw.ask("time", batch=bs)["seconds"]) for bs in batches}
        seconds = alternate(sides, a.rounds)
        dw_info = dw.info if dw is not None else None

    rows = []
    for (name, bs), secs in seconds.items():
        row = {
            "propagator": name if name == DEEPWAVE else f"fwi_jax {name}",
            "models_per_call": bs,
            "seconds": median(secs),
            "seconds_per_round": secs,
            "samples_per_s": bs / median(secs),
        }
        if (DEEPWAVE, bs) in seconds:  # per-round ratios of samples/s
            row |= Ratio.of(seconds[DEEPWAVE, bs], secs).fields("ratio_vs_deepwave")
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

    title = (
        f"devices: {jax.device_count()} x {jax.devices()[0].platform}; models: {a.models} "
        f"(half FlatVel-A, half CurveFault-B); one sample = 5 shots x 1000 steps; {a.rounds} rounds"
    )
    table = print_table(rows, COLUMNS, title)
    print("\nrelative L2 difference of receiver data:")
    for k, v in diffs.items():
        print(f"  {k}: {v:.4%}")
    content = {"rows": rows, "relative_l2": diffs, "rounds": a.rounds, "deepwave_sidecar": dw_info}
    write_results(a.out, content, table, args=a)


if __name__ == "__main__":
    main()
