"""FWI gradient throughput: fwi_jax's reverse mode through the fast solver against deepwave's scalar
propagator with its backward pass, alternating in one run.

    python benchmarks/gradient.py [--models 16] [--rounds 3] [--out benchmarks/results/gradient.json]
    python benchmarks/gradient.py --models 2 --rounds 1 --no-deepwave --out /tmp/grad.json   # a check, ~1 min

About 3 minutes at the defaults on a 2-core CPU (~90 s of timed gradients over 3 rounds, compilation).

One gradient = d/dv of the L2 data misfit of one 70 x 70 model: forward and adjoint of 5 shots x
1000 steps, OpenFWI's geometry, a 20-cell PML on both sides (fwi_jax fast mode: CPML, deepwave: its
PML), 4th-order space, 1 ms. Each side fits its own data of the true models from a start 10% of the
way to the models' mean, so the gradients are comparable: their cosine similarity is reported.
deepwave runs in the PyTorch interpreter (--torch-python / $FWI_JAX_TORCH_PYTHON) as a sidecar, as
in generation.py; each round times fwi_jax, then deepwave, at 1 and N models per call, and the
table gives median seconds and the median and range of the per-round ratios (_harness.Ratio). Peak memory: fwi_jax's
compiled temporary buffers (XLA memory analysis) and each process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

from _harness import prepare_host

prepare_host(__name__, all_cores=True)  # first: one JAX device per core

# ruff: noqa: E402
import jax
import jax.numpy as jnp
import numpy as np
from _deepwave import benchmark_models, columns, deepwave
from _harness import Col, Ratio, alternate, median, print_table, timed, write_results

from fwi_jax.physics import forward

HERE = Path(__file__).resolve().parent
DEEPWAVE = "deepwave scalar (PML 20)"
OURS = "fwi_jax fast (CPML 20)"
COLUMNS = [*columns("gradients/s", "gradients_per_s", "vs deepwave (range)"), Col("peak memory", "memory")]


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
    p.add_argument("--no-deepwave", action="store_true", help="time fwi_jax only")
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

    similarity = None
    with deepwave(models, a.torch_python, not a.no_deepwave) as dw:
        sides = {}
        for bs in batches:
            sides[OURS, bs] = lambda bs=bs: timed(lambda: jax.block_until_ready(grad(*inputs[bs])))
            if dw is not None:
                sides[DEEPWAVE, bs] = lambda bs=bs: dw.ask("grad_time", batch=bs)
        if dw is not None:
            dw.ask("grad_setup", start=dw.put("start", starts))
            similarity = cosine(ours, dw.get("grad", batch=a.models))
        timed_rounds = alternate(sides, a.rounds)
    seconds = {key: [r["seconds"] for r in rs] if key[0] == DEEPWAVE else rs for key, rs in timed_rounds.items()}
    dw_rss = timed_rounds[DEEPWAVE, a.models][-1]["max_rss_mb"] if (DEEPWAVE, a.models) in timed_rounds else None
    rows = table_rows(seconds, memory, dw_rss)
    our_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    title = (
        f"devices: {jax.device_count()} x {jax.devices()[0].platform}; models: {a.models} (half FlatVel-A, "
        f"half CurveFault-B); one gradient = 5 shots x 1000 steps forward + adjoint; {a.rounds} rounds"
    )
    table = print_table(rows, COLUMNS, title)
    if similarity is not None:
        print(f"\ncosine similarity of the two gradients (mean over {a.models} models): {similarity:.4f}")
    print(f"peak RSS: fwi_jax process {our_rss:.0f} MB" + (f", deepwave sidecar {dw_rss:.0f} MB" if dw_rss else ""))
    content = {"rows": rows, "cosine_similarity": similarity, "rounds": a.rounds}
    content |= {"fwi_jax_peak_rss_mb": our_rss, "deepwave_peak_rss_mb": dw_rss}
    write_results(a.out, content, table, args=a)


def table_rows(seconds: dict, memory: dict, dw_rss: float | None) -> list[dict]:
    rows = []
    for (name, bs), secs in sorted(seconds.items(), key=lambda item: item[0][0] != OURS):  # fwi_jax's rows first
        row = {"propagator": name, "models_per_call": bs, "seconds": median(secs),
               "seconds_per_round": secs, "gradients_per_s": bs / median(secs)}  # fmt: skip
        if name == OURS:
            row["memory"] = f"{memory[bs]:.0f} MB temporaries" if memory.get(bs) is not None else "-"
        else:
            row["memory"] = f"{dw_rss:.0f} MB process RSS" if dw_rss else "-"
        if name == OURS and (DEEPWAVE, bs) in seconds:
            row |= Ratio.of(seconds[DEEPWAVE, bs], secs).fields("ratio_vs_deepwave")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
