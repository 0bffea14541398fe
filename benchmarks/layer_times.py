"""Per-block forward + backward times of InversionNet: fwi_jax against the PyTorch blocks, in one run.

    python benchmarks/layer_times.py [--batch 16] [--reps 3] [--steps 3] [--conv-impl auto] [--no-torch]

Each Conv/Deconv-BN-activation block of the full-size network is timed alone in train mode:
forward plus the gradients of its parameters and of its input, on a random input of the shape it
sees inside the network and a random output cotangent. Rounds alternate between fwi_jax and
PyTorch (a sidecar process: this interpreter when torch is importable, otherwise
FWI_JAX_TORCH_PYTHON) so both see the same machine state. Shows where a framework loses time;
the sum of blocks is not the train step (no loss, optimizer or cross-block fusion). Prints a
table, writes benchmarks/results/layer_times.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from _sidecar import TorchSidecar

from fwi_jax.cpu_runtime import use_transparent_hugepages
from fwi_jax.models import build_model
from fwi_jax.models.layers import ConvBlock, DeconvBlock

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "layer_times.json"


class TorchBlocks:
    """The PyTorch network's blocks in the _torch_layers.py sidecar."""

    def __init__(self, batch: int):
        self.side = TorchSidecar("_torch_layers.py")
        self.blocks = {name: tuple(shape) for name, shape in self.side.ask(cmd="setup", batch=batch)["blocks"]}

    def time(self, n: int) -> dict[str, list[float]]:
        return self.side.ask(cmd="time", n=n)["times"]

    def close(self) -> None:
        self.side.close()


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
        times = {}
        for name, (fn, args, _) in self.blocks.items():
            jax.block_until_ready(fn(*args))
            times[name] = []
            for _ in range(n):
                t = time.perf_counter()
                jax.block_until_ready(fn(*args))
                times[name].append(time.perf_counter() - t)
        return times


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
    tb = None if a.no_torch else TorchBlocks(a.batch)
    if tb is not None:
        nhwc = {name: (s[0], s[2], s[3], s[1]) for name, s in tb.blocks.items()}
        mismatch = {k: (v[2], nhwc.get(k)) for k, v in jb.blocks.items() if nhwc.get(k) != v[2]}
        if mismatch or set(nhwc) != set(jb.blocks):
            raise RuntimeError(f"fwi_jax and PyTorch blocks differ (name: (jax NHWC, torch as NHWC)): {mismatch}")
    jt = {k: [] for k in jb.blocks}
    tt = {k: [] for k in jb.blocks}
    for r in range(a.reps):
        for k, v in jb.time(a.steps).items():
            jt[k] += v
        if tb is not None:
            for k, v in tb.time(a.steps).items():
                tt[k] += v
        print(f"round {r + 1}/{a.reps} done", flush=True)
    if tb is not None:
        tb.close()
    rows = []
    for k, (_, _, shape) in jb.blocks.items():
        row = {"block": k, "input_nhwc": list(shape), "fwi_jax_ms": 1e3 * float(np.median(jt[k]))}
        if tt[k]:
            row |= {"torch_ms": 1e3 * float(np.median(tt[k])), "ratio": float(np.median(jt[k]) / np.median(tt[k]))}
        rows.append(row)
    total = {"block": "sum", "fwi_jax_ms": sum(r["fwi_jax_ms"] for r in rows)}
    if tb is not None:
        total |= {"torch_ms": sum(r["torch_ms"] for r in rows)}
        total["ratio"] = total["fwi_jax_ms"] / total["torch_ms"]
    print(
        f"\nInversionNet blocks, forward + backward in train mode, batch {a.batch}, {a.dtype}, "
        f"conv_impl={a.conv_impl}, on {dev.device_kind} ({os.cpu_count()} CPUs), median of {a.reps * a.steps}"
    )
    print("| block | input (NHWC) | fwi_jax (ms) | PyTorch (ms) | fwi_jax / PyTorch |")
    print("|---|---|---|---|---|")
    for r in rows + [total]:
        shape = " x ".join(map(str, r.get("input_nhwc", []))) or ""
        torch_ms = f"{r['torch_ms']:.0f}" if "torch_ms" in r else ""
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        print(f"| {r['block']} | {shape} | {r['fwi_jax_ms']:.0f} | {torch_ms} | {ratio} |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "device": dev.device_kind,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "jax": jax.__version__,
        "batch": a.batch,
        "dtype": a.dtype,
        "conv_impl": a.conv_impl,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows + [total]}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    use_transparent_hugepages()  # the PyTorch sidecar inherits it: both sides alike
    main()
