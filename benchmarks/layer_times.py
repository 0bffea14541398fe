"""Per-block forward + backward times of InversionNet: fwi_jax against the PyTorch blocks, in one run.

    python benchmarks/layer_times.py [--batch 16] [--reps 3] [--steps 3] [--conv-impl auto] [--no-torch]
    python benchmarks/layer_times.py --batch 2 --reps 1 --steps 1 --out /tmp/layers.json   # a check, ~1 min

About 5 minutes at the defaults on a 2-core CPU (25 blocks compiled, then each timed 9 times per side).

Each Conv/Deconv-BN-activation block of the full-size network is timed alone in train mode:
forward plus the gradients of its parameters and of its input, on a random input of the shape it
sees inside the network and a random output cotangent. Rounds alternate between fwi_jax and
PyTorch (a sidecar process: this interpreter when torch is importable, otherwise
FWI_JAX_TORCH_PYTHON) so both see the same machine state; a block's ratio is the median and range
of the per-round ratios of its median times (_harness.Ratio). Shows where a framework loses time;
the sum of blocks is not the train step (no loss, optimizer or cross-block fusion). Prints a
table, writes benchmarks/results/layer_times.json.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

from _harness import prepare_host

prepare_host(__name__)  # first: huge pages, which the PyTorch sidecar inherits (both sides alike)

# ruff: noqa: E402
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from _harness import Col, Ratio, alternate, median, print_table, ratio_col, timings, write_results
from _sidecar import Sidecar

from fwi_jax.models import build_model
from fwi_jax.models.layers import ConvBlock, DeconvBlock

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "layer_times.json"
COLUMNS = [
    "block",
    Col("input (NHWC)", lambda r: " x ".join(map(str, r.get("input_nhwc", [])))),
    Col("fwi_jax (ms)", "fwi_jax_ms", "{:.0f}"),
    Col("PyTorch (ms)", "torch_ms", "{:.0f}"),
    ratio_col("fwi_jax / PyTorch (range over rounds)"),
]


class JaxBlocks:
    """Every ConvBlock / DeconvBlock of the network, each with its own jitted forward + backward."""

    def __init__(self, batch: int, conv_impl: str, dtype: str):
        model = build_model("inversionnet", "openfwi", (70, 70), dtype, conv_impl)
        x = jnp.zeros((batch, 1000, 70, 5), jnp.float32)
        variables = jax.jit(lambda x: model.init(jax.random.key(0, impl="rbg"), x, train=False))(x)
        found = []

        def record(next_fun, args, kwargs, context):
            m = context.module
            if isinstance(m, (ConvBlock, DeconvBlock)) and context.method_name == "__call__":
                found.append((m.path, m.clone(parent=None), args[0].shape, args[0].dtype))
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
        rng = np.random.default_rng(0)
        self.blocks = {}
        for path, block, shape, in_dtype in found:
            v = {k: functools.reduce(lambda d, p: d[p], path, variables[k]) for k in ("params", "batch_stats")}
            xin = jnp.asarray(rng.normal(size=shape), in_dtype)

            def forward(params, x, block=block, stats=v["batch_stats"]):
                return block.apply({"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])[0]

            def loss(params, x, ct, forward=forward):
                return jnp.vdot(forward(params, x).astype(jnp.float32), ct)

            out = jax.eval_shape(forward, v["params"], xin)
            ct = jnp.asarray(rng.normal(size=out.shape), jnp.float32)
            fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
            jax.block_until_ready(fn(v["params"], xin, ct))  # compile outside the timings
            self.blocks[path[-1]] = (fn, (v["params"], xin, ct), tuple(shape))

    def time(self, n: int) -> dict[str, list[float]]:
        """Per block, ``n`` call times after one untimed call (as the PyTorch side times its blocks)."""
        return {
            name: timings(lambda fn=fn, args=args: jax.block_until_ready(fn(*args)), n, warmup=1)
            for name, (fn, args, _) in self.blocks.items()
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--reps", type=int, default=3, help="alternating rounds per framework")
    p.add_argument("--steps", type=int, default=3, help="calls per block per round")
    p.add_argument("--conv-impl", default="auto", choices=["auto", "xla", "einsum"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args()
    dev = jax.devices()[0]
    print(f"compiling {a.batch=} blocks ...", flush=True)
    jb = JaxBlocks(a.batch, a.conv_impl, a.dtype)
    sides = {"fwi_jax": functools.partial(jb.time, a.steps)}
    tb = None if a.no_torch else Sidecar("_torch_layers.py")
    if tb is not None:
        shapes = {name: tuple(shape) for name, shape in tb.ask("setup", batch=a.batch)["blocks"]}
        nhwc = {name: (s[0], s[2], s[3], s[1]) for name, s in shapes.items()}
        mismatch = {k: (v[2], nhwc.get(k)) for k, v in jb.blocks.items() if nhwc.get(k) != v[2]}
        if mismatch or set(nhwc) != set(jb.blocks):
            raise RuntimeError(f"fwi_jax and PyTorch blocks differ (name: (jax NHWC, torch as NHWC)): {mismatch}")
        sides["torch"] = lambda: tb.ask("time", n=a.steps)["times"]
    rounds = alternate(sides, a.reps)  # per side, one {block: step times} per round
    if tb is not None:
        tb.close()
    # Per side, per block: the median of each round's times (the numbers the ratio divides).
    per_round = {side: {k: [median(r[k]) for r in rs] for k in jb.blocks} for side, rs in rounds.items()}
    rows = []
    for k, (_, _, shape) in jb.blocks.items():
        row = {
            "block": k,
            "input_nhwc": list(shape),
            "fwi_jax_ms": 1e3 * median(sum((r[k] for r in rounds["fwi_jax"]), [])),
        }
        if "torch" in rounds:
            row["torch_ms"] = 1e3 * median(sum((r[k] for r in rounds["torch"]), []))
            row |= Ratio.of(per_round["fwi_jax"][k], per_round["torch"][k]).fields()
        rows.append(row)
    total = {"block": "sum", "fwi_jax_ms": sum(r["fwi_jax_ms"] for r in rows)}
    if "torch" in rounds:
        total["torch_ms"] = sum(r["torch_ms"] for r in rows)
        sums = {
            side: [sum(blocks[k][r] for k in jb.blocks) for r in range(a.reps)] for side, blocks in per_round.items()
        }
        total |= Ratio.of(sums["fwi_jax"], sums["torch"]).fields()
    title = (
        f"InversionNet blocks, forward + backward in train mode, batch {a.batch}, {a.dtype}, "
        f"conv_impl={a.conv_impl}, on {dev.device_kind} ({os.cpu_count()} CPUs), median of {a.reps * a.steps}"
    )
    table = print_table(rows + [total], COLUMNS, title)
    content = {"batch": a.batch, "dtype": a.dtype, "conv_impl": a.conv_impl, "rows": rows + [total]}
    write_results(a.out, content, table, args=a)


if __name__ == "__main__":
    main()
