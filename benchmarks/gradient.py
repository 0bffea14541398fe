"""FWI gradient throughput: fwi_jax's hand-written adjoint through the fast solver against deepwave's
scalar propagator with its backward pass (and JAX's own reverse mode, and Devito when installed),
alternating in one run.

    python benchmarks/gradient.py [--models 16] [--rounds 3] [--out benchmarks/results/gradient.json]
        [--torch-python PY] [--devito-python PY] [--no-autodiff]
    python benchmarks/gradient.py --models 2 --rounds 1 --no-deepwave --out /tmp/grad.json   # a check, ~1 min

About 6 minutes at the defaults on a 2-core CPU (3 rounds of every row, compilation, Devito's setup).

One gradient = d/dv of the L2 data misfit of one 70 x 70 model: forward and adjoint of 5 shots x
1000 steps, OpenFWI's geometry, a 20-cell absorbing layer (fwi_jax fast mode: CPML, deepwave: its
PML, Devito: its damping layer), 4th order in space, 1 ms. Each side fits its own data of the true
models from a start 10% of the way to the models' mean, so the gradients are comparable: their
cosine similarity is reported. Rows:
- fwi_jax, `forward(..., gradient="adjoint")` (the default): the hand-written adjoint;
- fwi_jax, `gradient="autodiff"`: JAX's reverse mode through the rematerialized scan (what fwi_jax
  used before the adjoint; --no-autodiff leaves it out);
- deepwave (the PyTorch interpreter of --torch-python / $FWI_JAX_TORCH_PYTHON, as a sidecar);
- Devito's acoustic example solver, forward with the saved wavefield + `jacobian_adjoint`, per
  model and shot (the interpreter of --devito-python / $FWI_JAX_DEVITO_PYTHON with `pip install
  devito devito-examples`; an anchor, not a dependency; skipped with the reason when absent).
Each round times every row at 1 and N models per call; the table gives median seconds, the median
and range of the per-round ratios to deepwave (_harness.Ratio), and for fwi_jax's rows the gradient's
cost in forwards (the forward, `forward(v, mode="fast")` as generation.py runs it, is timed in the
same rounds). Peak memory: fwi_jax's compiled temporary buffers (XLA memory analysis) and each
process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

from _harness import prepare_host

# First: one JAX device per core. No huge pages on either side: processes taking turns each
# faulted fresh huge pages on every call, which spread the times 1.5-2.5x (docs/performance.md#fwi-gradients).
prepare_host(__name__, all_cores=True, hugepages=False)

# ruff: noqa: E402
import jax
import jax.numpy as jnp
import numpy as np
from _deepwave import benchmark_models, columns, deepwave
from _harness import Col, Ratio, alternate, median, print_table, timed, write_results
from _sidecar import Sidecar

from fwi_jax.physics import forward

HERE = Path(__file__).resolve().parent
DEEPWAVE = "deepwave scalar (PML 20)"
DEVITO = "Devito acoustic example (damping 20)"
OURS = "fwi_jax fast (CPML 20), adjoint"
AUTODIFF = "fwi_jax fast (CPML 20), JAX autodiff"
FORWARD = "fwi_jax fast forward"
DEVITO_ENV = "FWI_JAX_DEVITO_PYTHON"
COLUMNS = [
    *columns("gradients/s", "gradients_per_s", "vs deepwave (range)"),
    Col("cost (forwards)", "forwards", "{:.2f}"),
    Col("peak memory", "memory"),
]


def start_models(models: np.ndarray) -> np.ndarray:
    return (0.9 * models + 0.1 * models.mean(axis=(1, 2), keepdims=True)).astype(np.float32)


def fwi_jax_gradient(gradient: str):
    def misfit(v, target):
        return jnp.sum((forward(v, mode="fast", unroll=1, gradient=gradient) - target) ** 2)

    return jax.jit(jax.grad(misfit))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def devito_side(python: str, models: np.ndarray, starts: np.ndarray, folder: Path) -> tuple[Sidecar | None, str]:
    """(the Devito sidecar set up on the models, its description) or (None, why it was skipped)."""
    exe = python or os.environ.get(DEVITO_ENV, "")
    if not exe:
        return None, f"Devito row skipped: pass --devito-python or set {DEVITO_ENV} (pip install devito-examples)"
    side = Sidecar("_devito_sidecar.py", python=exe)
    np.save(folder / "models.npy", models)
    np.save(folder / "starts.npy", starts)
    try:
        info = side.ask("setup", models=str(folder / "models.npy"), start=str(folder / "starts.npy"))
    except RuntimeError as e:
        side.close()
        return None, f"Devito row skipped: its setup failed ({str(e).strip().splitlines()[-1][:200]})"
    return side, f"Devito {info['devito']}, {info['threads']} OpenMP threads"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", type=int, default=16, help="models per call for the batched rows")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--torch-python", default="", help="interpreter with torch + deepwave")
    p.add_argument("--no-deepwave", action="store_true", help="leave deepwave out")
    p.add_argument("--devito-python", default="", help=f"interpreter with devito (default: ${DEVITO_ENV})")
    p.add_argument("--no-autodiff", action="store_true", help="leave out JAX's own reverse mode")
    p.add_argument("--out", default=str(HERE / "results" / "gradient.json"))
    a = p.parse_args()
    models = benchmark_models(a.models)
    starts = start_models(models)
    targets = np.asarray(forward(models, mode="fast"))
    grads = {OURS: fwi_jax_gradient("adjoint")}
    if not a.no_autodiff:
        grads[AUTODIFF] = fwi_jax_gradient("autodiff")
    fwd = jax.jit(lambda v: forward(v, mode="fast"))
    batches = [1, a.models]
    inputs = {bs: (jnp.asarray(starts[:bs]), jnp.asarray(targets[:bs])) for bs in batches}
    memory, ours = {}, {}
    for name, grad in grads.items():
        for bs in batches:  # compile, and read the compiled program's buffer sizes
            analysis = grad.lower(*inputs[bs]).compile().memory_analysis()
            memory[name, bs] = getattr(analysis, "temp_size_in_bytes", 0) / 2**20 if analysis is not None else None
            ours[name, bs] = np.asarray(grad(*inputs[bs]))
    for bs in batches:
        fwd(inputs[bs][0]).block_until_ready()

    similarity, notes = None, []
    with deepwave(models, a.torch_python, not a.no_deepwave) as dw, tempfile.TemporaryDirectory() as tmp:
        dv, note = devito_side(a.devito_python, models, starts, Path(tmp))
        notes.append(note)
        sides = {}
        for bs in batches:
            for name, grad in grads.items():
                sides[name, bs] = lambda g=grad, bs=bs: timed(lambda: jax.block_until_ready(g(*inputs[bs])))
            sides[FORWARD, bs] = lambda bs=bs: timed(lambda: jax.block_until_ready(fwd(inputs[bs][0])))
            if dw is not None:
                sides[DEEPWAVE, bs] = lambda bs=bs: dw.ask("grad_time", batch=bs)
            if dv is not None:
                sides[DEVITO, bs] = lambda bs=bs: dv.ask("grad_time", batch=bs)["seconds"]
        if dw is not None:
            dw.ask("grad_setup", start=dw.put("start", starts))
            similarity = cosine(ours[OURS, a.models], dw.get("grad", batch=a.models))
        timed_rounds = alternate(sides, a.rounds)
        if dv is not None:
            dv.close()
    seconds = {key: [r["seconds"] for r in rs] if key[0] == DEEPWAVE else rs for key, rs in timed_rounds.items()}
    dw_rss = timed_rounds[DEEPWAVE, a.models][-1]["max_rss_mb"] if (DEEPWAVE, a.models) in timed_rounds else None
    rows = table_rows(seconds, memory, dw_rss)
    our_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    title = (
        f"devices: {jax.device_count()} x {jax.devices()[0].platform}; models: {a.models} (half FlatVel-A, "
        f"half CurveFault-B); one gradient = 5 shots x 1000 steps forward + adjoint; {a.rounds} rounds"
    )
    table = print_table(rows, COLUMNS, title)
    agree = rel_l2(ours[OURS, a.models], ours[AUTODIFF, a.models]) if (AUTODIFF, a.models) in ours else None
    if agree is not None:
        print(f"\nadjoint vs JAX autodiff gradients: relative L2 difference {agree:.2e}")
    if similarity is not None:
        print(f"cosine similarity of fwi_jax's and deepwave's gradients (mean of {a.models}): {similarity:.4f}")
    print(f"peak RSS: fwi_jax process {our_rss:.0f} MB" + (f", deepwave sidecar {dw_rss:.0f} MB" if dw_rss else ""))
    print("\n".join(notes), file=sys.stderr)
    content = {"rows": rows, "cosine_similarity": similarity, "adjoint_vs_autodiff_rel_l2": agree, "notes": notes}
    content |= {"rounds": a.rounds, "fwi_jax_peak_rss_mb": our_rss, "deepwave_peak_rss_mb": dw_rss}
    write_results(a.out, content, table, args=a)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def table_rows(seconds: dict, memory: dict, dw_rss: float | None) -> list[dict]:
    rows = []
    order = [OURS, AUTODIFF, DEEPWAVE, DEVITO]
    for (name, bs), secs in sorted(seconds.items(), key=lambda item: (order.index(item[0][0]) if item[0][0] in
                                                                       order else 9, item[0][1])):  # fmt: skip
        if name == FORWARD:
            continue
        row = {"propagator": name, "models_per_call": bs, "seconds": median(secs),
               "seconds_per_round": secs, "gradients_per_s": bs / median(secs)}  # fmt: skip
        if (name, bs) in memory:  # fwi_jax's rows
            row["memory"] = f"{memory[name, bs]:.0f} MB temporaries" if memory[name, bs] is not None else "-"
            cost = Ratio.of(secs, seconds[FORWARD, bs])  # per round: gradient time / forward time
            row |= {"forwards": cost.median, "forwards_min": cost.min, "forwards_max": cost.max}
        elif name == DEEPWAVE:
            row["memory"] = f"{dw_rss:.0f} MB process RSS" if dw_rss else "-"
        if name != DEEPWAVE and (DEEPWAVE, bs) in seconds:
            row |= Ratio.of(seconds[DEEPWAVE, bs], secs).fields("ratio_vs_deepwave")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
