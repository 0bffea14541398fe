"""FWI gradient throughput: fwi_jax's reverse mode through the fast solver against deepwave's scalar
propagator with its backward pass, alternating in one run.

    python benchmarks/gradient.py [--models 16] [--rounds 3] [--out benchmarks/results/gradient.json]

One gradient = d/dv of the L2 data misfit of one 70 x 70 model: forward and adjoint of 5 shots x
1000 steps, OpenFWI's geometry, a 20-cell PML on both sides (fwi_jax fast mode: CPML, deepwave: its
PML), 4th-order space, 1 ms. Each side fits its own data of the true models from a start 10% of the
way to the models' mean, so the gradients are comparable: their cosine similarity is reported.
deepwave runs in the PyTorch interpreter (--torch-python / $FWI_JAX_TORCH_PYTHON) as a sidecar, as
in generation.py; each round times fwi_jax, then deepwave, at 1 and N models per call, and the
table gives median seconds and the median and range of the per-round ratios. Peak memory: fwi_jax's
compiled temporary buffers (XLA memory analysis) and each process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

from fwi_jax.cpu_runtime import use_all_cpu_cores, use_transparent_hugepages

use_all_cpu_cores()  # before JAX is imported: one device per core

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _sidecar import TorchSidecar  # noqa: E402
from generation import benchmark_models, time_call  # noqa: E402

from fwi_jax import torchenv  # noqa: E402
from fwi_jax.physics import forward  # noqa: E402

HERE = Path(__file__).resolve().parent
DEEPWAVE = "deepwave scalar (PML 20)"
OURS = "fwi_jax fast (CPML 20)"


def start_models(models: np.ndarray) -> np.ndarray:
    return (0.9 * models + 0.1 * models.mean(axis=(1, 2), keepdims=True)).astype(np.float32)


def fwi_jax_gradient():
    def misfit(v, target):
        return jnp.sum((forward(v, mode="fast", unroll=1) - target) ** 2)

    return jax.jit(jax.grad(misfit))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=16, help="models per call for the batched rows")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--torch-python", default="", help="interpreter with torch + deepwave")
    p.add_argument("--out", default=str(HERE / "results" / "gradient.json"))
    a = p.parse_args()
    models = benchmark_models(a.models)
    starts = start_models(models)
    targets = np.asarray(forward(models, mode="fast"))
    grad = fwi_jax_gradient()
    batches = [1, a.models]
    inputs = {bs: (jnp.asarray(starts[:bs]), jnp.asarray(targets[:bs])) for bs in batches}
    memory = {}
    for bs in batches:  # compile, and read the compiled program's buffer sizes
        compiled = grad.lower(*inputs[bs]).compile()
        analysis = compiled.memory_analysis()
        memory[bs] = getattr(analysis, "temp_size_in_bytes", 0) / 2**20 if analysis is not None else None
        ours = np.asarray(grad(*inputs[bs]))
    calls = {bs: (lambda bs=bs: jax.block_until_ready(grad(*inputs[bs]))) for bs in batches}

    python = torchenv.torch_python(a.torch_python)
    seconds = {(OURS, bs): [] for bs in batches}
    dw_rss, similarity = None, None
    with tempfile.TemporaryDirectory() as tmp:
        dw = None
        if python is None:
            print("deepwave not run: pass --torch-python or set FWI_JAX_TORCH_PYTHON (see README)", file=sys.stderr)
        else:
            np.save(Path(tmp) / "models.npy", models)
            np.save(Path(tmp) / "start.npy", starts)
            dw = TorchSidecar("_deepwave_sidecar.py", python=python)
            dw.ask(cmd="setup", models=str(Path(tmp) / "models.npy"))
            dw.ask(cmd="grad_setup", start=str(Path(tmp) / "start.npy"))
            dw.ask(cmd="grad", batch=a.models, out=str(Path(tmp) / "dw_grad.npy"))
            similarity = cosine(ours, np.load(Path(tmp) / "dw_grad.npy"))
        for r in range(a.rounds):
            for bs in batches:
                seconds[OURS, bs].append(time_call(calls[bs]))
                if dw is not None:
                    reply = dw.ask(cmd="grad_time", batch=bs)
                    seconds.setdefault((DEEPWAVE, bs), []).append(reply["seconds"])
                    dw_rss = reply["max_rss_mb"]
            print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
        if dw is not None:
            dw.close()
    rows = table(seconds, memory, dw_rss)
    our_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\ndevices: {jax.device_count()} x {jax.devices()[0].platform}; models: {a.models} (half FlatVel-A, "
        f"half CurveFault-B); one gradient = 5 shots x 1000 steps forward + adjoint; {a.rounds} rounds\n"
    )
    print("| propagator | models/call | s/call | gradients/s | vs deepwave (range) | peak memory |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = "-"
        if "ratio_vs_deepwave" in r:
            ratio = f"{r['ratio_vs_deepwave']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
        cells = (r["propagator"], r["models_per_call"], f"{r['seconds']:.2f}", f"{r['gradients_per_s']:.2f}", ratio)
        print("| " + " | ".join(map(str, cells)) + f" | {r['memory']} |")
    if similarity is not None:
        print(f"\ncosine similarity of the two gradients (mean over {a.models} models): {similarity:.4f}")
    print(f"peak RSS: fwi_jax process {our_rss:.0f} MB" + (f", deepwave sidecar {dw_rss:.0f} MB" if dw_rss else ""))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"rows": rows, "cosine_similarity": similarity, "rounds": a.rounds, "devices": jax.device_count()}
    report |= {"platform": jax.devices()[0].platform, "fwi_jax_peak_rss_mb": our_rss, "deepwave_peak_rss_mb": dw_rss}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")


def table(seconds: dict, memory: dict, dw_rss: float | None) -> list[dict]:
    rows = []
    for (name, bs), secs in seconds.items():
        row = {"propagator": name, "models_per_call": bs, "seconds": float(np.median(secs)),
               "seconds_per_round": secs, "gradients_per_s": bs / float(np.median(secs))}  # fmt: skip
        if name == OURS:
            row["memory"] = f"{memory[bs]:.0f} MB temporaries" if memory.get(bs) is not None else "-"
        else:
            row["memory"] = f"{dw_rss:.0f} MB process RSS" if dw_rss else "-"
        if name == OURS and (DEEPWAVE, bs) in seconds:
            ratios = np.asarray(seconds[DEEPWAVE, bs]) / np.asarray(secs)
            row |= {"ratio_vs_deepwave": float(np.median(ratios)), "ratio_min": float(ratios.min()),
                    "ratio_max": float(ratios.max())}  # fmt: skip
        rows.append(row)
    return rows


if __name__ == "__main__":
    use_transparent_hugepages()  # the deepwave sidecar inherits it: both sides alike
    main()
