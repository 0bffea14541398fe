"""Full-size InversionNet train step and inference: fwi_jax against the PyTorch implementation.

    python benchmarks/step_time.py [--batches 4 16] [--reps 3] [--steps 2] [--dtypes float32 bfloat16] [--no-torch]
        [--dims openfwi|narrow|small|tiny] [--rules-too]
    python benchmarks/step_time.py --batches 2 --reps 1 --steps 1 --dtypes float32 --out /tmp/st.json  # a check

About 10 minutes at the defaults on a 2-core CPU (each batch and dtype compiles for ~20 s; the
check takes about 2 minutes).

One run alternates the two frameworks (a round of fwi_jax steps, then a round of PyTorch steps,
repeated) so both see the same machine state. PyTorch runs in-process when importable, otherwise
in the interpreter named by FWI_JAX_TORCH_PYTHON (e.g. a Python 3.11 venv with torch==2.13.0).
Reports compile time, median step time, samples/s, GFLOP/s (XLA's cost analysis and the
analytic count: 4.19 GFLOP per sample forward, ~3x for a train step), the fraction of this
machine's measured fp32 matmul peak, and the fwi_jax / PyTorch time ratio (_harness.Ratio: the
median and range of the per-round ratios of each round's median step). With --rules-too the steps are
also built with the shape rules alone (ignoring the convolution forms `python -m fwi_jax.models tune`
cached for this CPU) and timed in the same rounds: the tuning's gain as a ratio. Prints a table and writes
benchmarks/results/step_time.json.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import time
from pathlib import Path

from _harness import prepare_host

prepare_host(__name__)  # first: huge pages, which the PyTorch sidecar inherits (both sides alike)
# PyTorch's sidecar shares an accelerator with this process: JAX must not take 75% of it up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# ruff: noqa: E402
import jax
import jax.numpy as jnp
import numpy as np
from _harness import Col, Ratio, alternate, median, print_table, ratio_col, table_lines, timings, write_results
from _sidecar import Sidecar

from fwi_jax import parallel, torchenv
from fwi_jax.config import default_config
from fwi_jax.data.datasets import get_dataset
from fwi_jax.device_facts import describe
from fwi_jax.models import PRESETS, conv_tuning
from fwi_jax.training.steps import input_shape, make_steps

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "step_time.json"
FORWARD_GFLOP = 4.19  # per sample, from the layer table (2.09 GMAC)


def _gflops_text(row: dict) -> str:
    xla = f"{row['gflops_xla']:.0f}" if row["gflops_xla"] else "-"
    return f"{row['gflops_analytic']:.0f} / {xla}"


COLUMNS = [
    "batch",
    Col("step", "kind"),
    "dtype",
    Col("compile (s)", "compile_s", "{:.1f}"),
    Col("fwi_jax (s)", "fwi_jax_s", "{:.3f}"),
    Col("samples/s", "samples_per_s", "{:.2f}"),
    Col("GFLOP/s (analytic / XLA)", _gflops_text),
    Col("of matmul peak", "peak_fraction", "{:.0%}"),
    Col("MFU (datasheet bf16)", "datasheet_fraction", "{:.0%}"),
    Col("PyTorch (s)", "torch_s", "{:.3f}"),
    ratio_col("fwi_jax / PyTorch (range over rounds)"),
]
RULES_COLUMNS = [  # with --rules-too
    Col("shape rules (s)", "rules_s", "{:.3f}"),
    Col(
        "tuned / rules",
        lambda r: (
            f"{r['tuned_vs_rules']:.2f}x ({r['tuned_vs_rules_min']:.2f}-{r['tuned_vs_rules_max']:.2f})"
            if r.get("rules_s")
            else None
        ),
    ),  # fmt: skip
]


def jax_matmul_peak(n: int = 2048, dtype: str = "float32") -> float:
    """GFLOP/s of an n x n matmul in ``dtype`` on random data (zeros can run faster than real data)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(10):
        y = f(a)
    y.block_until_ready()
    return 10 * 2 * n**3 / (time.perf_counter() - t) / 1e9


class JaxSide:
    """The trainer's own jitted train step and predict step on one device."""

    def __init__(self, batch: int, dtype: str, dims: str = "openfwi", rules: bool = False):
        with conv_tuning.ignoring_cache() if rules else contextlib.nullcontext():  # forms fixed at compile
            self._build(batch, dtype, dims)

    def _build(self, batch: int, dtype: str, dims: str) -> None:
        spec = get_dataset("flatvel-a")
        c = default_config()
        c.model.compute_dtype, c.model.dims = dtype, dims
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

    def _train_step(self) -> None:
        self.state, m = self.train_fn(self.state, self.batch)
        jax.block_until_ready(m)

    def train(self, n: int) -> list[float]:
        return timings(self._train_step, n)

    def infer(self, n: int) -> list[float]:
        return timings(lambda: self.infer_fn(self.state, self.batch["seismic"]).block_until_ready(), n)


class TorchSide:
    """The PyTorch sidecar on this machine's device; ``skipped`` says why there is none (never started,
    or stopped when it failed: JAX's rows stand either way)."""

    def __init__(self, no_torch: bool, platform: str):
        self.side, self.skipped = None, None
        if no_torch:
            self.skipped = "PyTorch comparison skipped (--no-torch)"
        elif torchenv.torch_python() is None:
            self.skipped = f"PyTorch comparison skipped: no torch in this interpreter and {torchenv.ENV} is unset"
        else:
            self.side = Sidecar("_torch_step.py")
            where = self.ask("peak", n=256)
            want = {"gpu": "cuda", "cpu": "cpu"}.get(platform)
            if where and where["device"] != want:
                self.stop(f"JAX runs on {platform} but torch on {where['device']}")

    def ask(self, cmd: str, **msg) -> dict | None:
        if self.side is None:
            return None
        try:
            return self.side.ask(cmd, **msg)
        except RuntimeError as e:  # out of memory, a broken CUDA, a sidecar that died
            self.stop(f"its {cmd!r} failed ({str(e).strip().splitlines()[-1][:200]})")
            return None

    def stop(self, why: str) -> None:
        self.skipped = f"PyTorch comparison skipped: {why}"
        print(self.skipped, flush=True)
        if self.side is not None and self.side.proc.poll() is None:
            self.side.proc.kill()
        self.side = None

    def close(self) -> None:
        if self.side is not None:
            self.side.close()


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
    p.add_argument("--dims", default="openfwi", choices=sorted(PRESETS), help="widths (openfwi: the reference's)")
    p.add_argument("--rules-too", action="store_true",
                   help="also time the steps built with the shape rules only (ignoring the forms `python -m "
                        "fwi_jax.models tune` cached for this CPU), alternating: what the tuning gains")  # fmt: skip
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args()
    jax.config.update("jax_compilation_cache_dir", "")  # compile times measured cold
    dev = jax.devices()[0]
    facts = describe()
    torch_side = TorchSide(a.no_torch, dev.platform)
    n = 2048 if dev.platform == "cpu" else 8192
    peaks = {}
    for dtype in a.dtypes:
        ours = jax_matmul_peak(n, dtype)
        theirs = (torch_side.ask("peak", n=n, dtype=dtype) or {}).get("gflops")
        peaks[dtype] = {"jax": ours, "torch": theirs}
        print(f"{dtype} matmul peak ({n}^3): jax {ours:.0f} GFLOP/s" + (f", torch {theirs:.0f}" if theirs else ""))
    rows = []
    columns = COLUMNS + (RULES_COLUMNS if a.rules_too else [])

    def title() -> str:
        size = "24.4 M params" if a.dims == "openfwi" else f"{a.dims} widths"
        return (
            f"InversionNet ({size}) step times on {dev.device_kind} ({os.cpu_count()} CPUs), median of "
            f"{a.reps * a.steps} steps" + (f"; {torch_side.skipped}" if torch_side.skipped else "")
        )

    for b in a.batches:
        for dtype in a.dtypes:
            torch_setup = torch_side.ask("setup", batch=b, dtype=dtype, dims=list(PRESETS[a.dims]))
            print(f"batch {b}, {dtype}: compiling ...", flush=True)
            js = JaxSide(b, dtype, a.dims)
            js.train(1)
            js.infer(1)
            sides = {("fwi_jax", kind): functools.partial(getattr(js, kind), a.steps) for kind in ("train", "infer")}
            if a.rules_too:
                rules = JaxSide(b, dtype, a.dims, rules=True)
                rules.train(1)
                rules.infer(1)
                sides |= {
                    ("rules", kind): functools.partial(getattr(rules, kind), a.steps) for kind in ("train", "infer")
                }
            if torch_setup:
                for kind in ("train", "infer"):
                    sides["torch", kind] = lambda kind=kind: torch_side.side.ask(kind, n=a.steps)["times"]
            try:
                rounds = alternate(sides, a.reps)  # per side, one list of step times per round
            except RuntimeError as e:  # the PyTorch side failed mid-round: time fwi_jax alone
                torch_side.stop(f"it failed while timing ({str(e).strip().splitlines()[-1][:200]})")
                rounds = alternate({k: f for k, f in sides.items() if k[0] == "fwi_jax"}, a.reps)
            peak = max(v for v in peaks[dtype].values() if v)
            for kind, flops, comp in (
                ("train", js.train_flops, js.compile_s),
                ("infer", js.infer_flops, js.infer_compile_s),
            ):
                med = median(sum(rounds["fwi_jax", kind], []))
                # The layer table's count at the reference's widths; XLA's count for other widths.
                per_sample = FORWARD_GFLOP if a.dims == "openfwi" else (js.infer_flops or 0.0) / 1e9 / b
                analytic = per_sample * b * (3 if kind == "train" else 1)
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
                    "datasheet_fraction": (
                        analytic / med / (facts.bf16_peak_tflops * 1e3)
                        if facts.bf16_peak_tflops and dtype == "bfloat16"
                        else None
                    ),
                }
                if ("rules", kind) in rounds:
                    tuned = Ratio.of(rounds["fwi_jax", kind], rounds["rules", kind])
                    row |= {"rules_s": median(sum(rounds["rules", kind], [])), "tuned_vs_rules": tuned.median,
                            "tuned_vs_rules_min": tuned.min, "tuned_vs_rules_max": tuned.max}  # fmt: skip
                if ("torch", kind) in rounds:
                    tmed = median(sum(rounds["torch", kind], []))
                    row |= {"torch_s": tmed, "torch_first_step_s": torch_setup["first_step_s"]}
                    row |= {"torch_gflops": analytic / tmed, "torch_dtype": dtype}
                    row |= Ratio.of(rounds["fwi_jax", kind], rounds["torch", kind]).fields()
                rows.append(row)
                print(
                    f"  {kind}: fwi_jax {med:.3f} s" + (f", torch {row['torch_s']:.3f} s" if "torch_s" in row else "")
                )
            del js, sides  # frees this model (and the rules' one) before the next compiles
            rules = None
            # Written after each batch and dtype: a part stopped at its time limit keeps its rows.
            results = {"rows": rows, "peak_gflops": peaks, "torch_skipped": torch_side.skipped}
            write_results(a.out, results, [title(), ""] + table_lines(rows, columns), args=a)
    torch_side.close()
    table = print_table(rows, columns, title())
    write_results(a.out, {"rows": rows, "peak_gflops": peaks, "torch_skipped": torch_side.skipped}, table, args=a)


if __name__ == "__main__":
    main()
