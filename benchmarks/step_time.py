"""Full-size InversionNet train step and inference: fwi_jax against the PyTorch implementation.

    python benchmarks/step_time.py [--batches 4 16] [--reps 3] [--steps 2] [--dtypes float32 bfloat16]

One run alternates the two frameworks (a round of fwi_jax steps, then a round of PyTorch steps,
repeated) so both see the same machine state. PyTorch runs in-process when importable, otherwise
in the interpreter named by FWI_JAX_TORCH_PYTHON (e.g. a Python 3.11 venv with torch==2.13.0).
Reports compile time, median step time, samples/s, GFLOP/s (XLA's cost analysis and the
analytic count: 4.19 GFLOP per sample forward, ~3x for a train step), the fraction of this
machine's measured fp32 matmul peak, and the fwi_jax / PyTorch time ratio. Prints a table and
writes benchmarks/results/step_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _sidecar import TorchSidecar

from fwi_jax import parallel
from fwi_jax.config import default_config
from fwi_jax.data.datasets import get_dataset
from fwi_jax.cpu_runtime import use_transparent_hugepages
from fwi_jax.training.steps import input_shape, make_steps

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "step_time.json"
FORWARD_GFLOP = 4.19  # per sample, from the layer table (2.09 GMAC)


def jax_matmul_peak(n: int = 2048) -> float:
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(10):
        y = f(a)
    y.block_until_ready()
    return 10 * 2 * n**3 / (time.perf_counter() - t) / 1e9


class JaxSide:
    """The trainer's own jitted train step and predict step on one device."""

    def __init__(self, batch: int, dtype: str):
        spec = get_dataset("flatvel-a")
        c = default_config()
        c.model.compute_dtype = dtype
        steps = make_steps(c, spec, parallel.make_mesh(jax.devices()[:1]), steps_per_epoch=100)
        self.state = steps.init()
        rng = np.random.default_rng(0)
        self.batch = {
            "seismic": jnp.asarray(rng.normal(size=(batch, *input_shape(spec))).astype(np.float32)),
            "velocity": jnp.asarray(rng.uniform(-1, 1, size=(batch, 70, 70, 1)).astype(np.float32)),
        }
        t = time.perf_counter()
        lowered = steps.train.lower(self.state, self.batch)
        self.train_fn = lowered.compile()
        self.compile_s = time.perf_counter() - t
        self.train_flops = _flops(self.train_fn)
        t = time.perf_counter()
        self.infer_fn = steps.predict.lower(self.state, self.batch["seismic"]).compile()
        self.infer_compile_s = time.perf_counter() - t
        self.infer_flops = _flops(self.infer_fn)

    def train(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            self.state, m = self.train_fn(self.state, self.batch)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t)
        return times

    def infer(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            self.infer_fn(self.state, self.batch["seismic"]).block_until_ready()
            times.append(time.perf_counter() - t)
        return times


def _flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return float(cost.get("flops", 0.0)) or None
    except Exception:  # not every backend reports costs
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    p.add_argument("--reps", type=int, default=3, help="alternating rounds per framework")
    p.add_argument("--steps", type=int, default=2, help="steps per round")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], help="fwi_jax compute dtypes")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args()
    jax.config.update("jax_compilation_cache_dir", "")  # compile times measured cold
    dev = jax.devices()[0]
    torch_side = None if a.no_torch else TorchSidecar("_torch_step.py")
    peak_jax = jax_matmul_peak()
    peak_torch = torch_side.ask(cmd="peak")["gflops"] if torch_side else None
    peak = max(peak_jax, peak_torch or 0.0)
    print(f"fp32 matmul peak: jax {peak_jax:.0f} GFLOP/s" + (f", torch {peak_torch:.0f}" if peak_torch else ""))
    rows = []
    for b in a.batches:
        torch_setup = torch_side.ask(cmd="setup", batch=b) if torch_side else None
        for dtype in a.dtypes:
            print(f"batch {b}, fwi_jax {dtype}: compiling ...", flush=True)
            js = JaxSide(b, dtype)
            js.train(1)
            js.infer(1)
            jt, ji, tt, ti = [], [], [], []  # one list of step times per round
            for _ in range(a.reps):
                jt.append(js.train(a.steps))
                ji.append(js.infer(a.steps))
                if torch_side and dtype == a.dtypes[0]:
                    tt.append(torch_side.ask(cmd="train", n=a.steps)["times"])
                    ti.append(torch_side.ask(cmd="infer", n=a.steps)["times"])
            for kind, jrounds, trounds, flops, comp in (
                ("train", jt, tt, js.train_flops, js.compile_s),
                ("infer", ji, ti, js.infer_flops, js.infer_compile_s),
            ):
                jtimes, ttimes = sum(jrounds, []), sum(trounds, [])
                med = float(np.median(jtimes))
                analytic = FORWARD_GFLOP * b * (3 if kind == "train" else 1)
                row = {
                    "batch": b,
                    "kind": kind,
                    "dtype": dtype,
                    "compile_s": comp,
                    "fwi_jax_s": med,
                    "samples_per_s": b / med,
                    "gflops_analytic": analytic / med,
                    "gflops_xla": flops / 1e9 / med if flops else None,
                    "peak_fraction": analytic / med / peak,
                }
                if ttimes:
                    tmed = float(np.median(ttimes))
                    row |= {
                        "torch_s": tmed,
                        "torch_first_step_s": torch_setup["first_step_s"],
                        "torch_gflops": analytic / tmed,
                        "ratio": med / tmed,
                    }
                    per_round = [np.median(j) / np.median(t) for j, t in zip(jrounds, trounds, strict=True)]
                    row |= {"ratio_min": float(min(per_round)), "ratio_max": float(max(per_round))}
                rows.append(row)
                print(f"  {kind}: fwi_jax {med:.3f} s" + (f", torch {row['torch_s']:.3f} s" if ttimes else ""))
            del js
    if torch_side:
        torch_side.close()
    print(
        f"\nInversionNet (24.4 M params) step times on {dev.device_kind} ({os.cpu_count()} CPUs), median of "
        f"{a.reps * a.steps} steps"
    )
    print(
        "| batch | step | dtype | compile (s) | fwi_jax (s) | samples/s | GFLOP/s (analytic / XLA) | of peak | "
        "PyTorch (s) | fwi_jax / PyTorch (range over rounds) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        xla = f"{r['gflops_xla']:.0f}" if r["gflops_xla"] else "-"
        torch_s = f"{r['torch_s']:.3f}" if "torch_s" in r else "-"
        ratio = f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})" if "ratio" in r else "-"
        print(
            f"| {r['batch']} | {r['kind']} | {r['dtype']} | {r['compile_s']:.1f} | {r['fwi_jax_s']:.3f} | "
            f"{r['samples_per_s']:.2f} | {r['gflops_analytic']:.0f} / {xla} | {r['peak_fraction']:.0%} | "
            f"{torch_s} | {ratio} |"
        )
    result = {
        "rows": rows,
        "peak_gflops": {"jax": peak_jax, "torch": peak_torch},
        "device": dev.device_kind,
        "backend": jax.default_backend(),
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    use_transparent_hugepages()  # the PyTorch sidecar inherits it: both sides alike
    main()
