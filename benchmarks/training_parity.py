"""Training parity: fwi_jax and a PyTorch loop written from the reference recipe, step for step.

    python benchmarks/training_parity.py [--steps 300] [--lr 1e-3] [--out FILE.json] [--picture FILE.png]
    python benchmarks/training_parity.py --smoke --steps 2 --out /tmp/tp.json --picture /tmp/tp.png  # a check

About 20 minutes at the defaults on a 2-core CPU (the data, 448 exact-solver samples, are made once
and cached; then ~6 min per run, three runs); `--smoke` (the quickstart's smoke sizes: 24 samples,
`tiny` widths) checks the script in about a minute.

Same data (the quickstart's generated FlatVel-A-like set, normalized once on the host and handed
to both sides), the same initial weights (fwi_jax's initialization exported as a .pth with the
weight port's key map), the same batch order (fwi_jax's pipeline order), the same recipe (the
`small` widths at batch 16, AdamW with the quickstart's learning rate and milestone, loss L1 + L2,
BatchNorm in train mode) for --steps steps; then both predict the validation set in eval mode and
fwi_jax's metrics score both. PyTorch runs twice: with its default threads and on one thread
(oneDNN then orders its convolution sums differently; nothing else changes), which measures how
far two PyTorch runs drift apart by float32 rounding alone. Writes per-step losses to JSON and the curves to
docs/training_parity.png; prints the median relative loss differences and the final metrics.
Target: final validation metrics within 2% (SSIM within 0.01) of each other.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from _harness import Col, median, print_table, write_results

from fwi_jax import metrics, parallel, torchenv
from fwi_jax.config import quickstart_config
from fwi_jax.data import pipeline
from fwi_jax.data.open import open_sources
from fwi_jax.data.transforms import velocity_unit
from fwi_jax.models import PRESETS
from fwi_jax.torch_port.keymap import variables_to_state_dict
from fwi_jax.torch_port.pth import save_pth
from fwi_jax.training.steps import make_steps

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "training_parity.json"
PICTURE = HERE.parent / "docs" / "training_parity.png"
CONTROL = "PyTorch, 1 thread"  # differs from "PyTorch" in float32 summation order only
COLUMNS = [
    "run",
    Col("median rel. loss diff vs PyTorch, steps 1-50", "median_rel_loss_diff_first_50", "{:.2e}"),
    Col("last 100", "median_rel_loss_diff_last_100", "{:.2e}"),
    Col("val MAE (norm)", lambda r: r["val"]["mae_norm"], "{:.4f}"),
    Col("val RMSE (norm)", lambda r: r["val"]["rmse_norm"], "{:.4f}"),
    Col("val SSIM", lambda r: r["val"]["ssim"], "{:.4f}"),
]


def normalized(source, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The whole split, normalized, NCHW (PyTorch's layout): (N, 5, 1000, 70), (N, 1, 70, 70)."""
    data = pipeline.read_normalized(source, np.arange(n or len(source)))
    return np.transpose(data["seismic"], (0, 3, 1, 2)).copy(), np.transpose(data["velocity"], (0, 3, 1, 2)).copy()


def train_jax(steps, xs, ys, indices, val_x) -> tuple[list[float], np.ndarray, dict, float]:
    """(losses, validation predictions (N, H, W), initial variables, seconds)."""
    state = steps.init()
    init = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    losses, t = [], time.perf_counter()
    for step, idx in enumerate(indices):
        batch = {"seismic": xs[idx].transpose(0, 2, 3, 1), "velocity": ys[idx].transpose(0, 2, 3, 1)}
        state, m = steps.train(state, parallel.global_batch(batch, steps.mesh))
        losses.append(m["loss"])
        if (step + 1) % 50 == 0:
            print(f"fwi_jax step {step + 1}: loss {float(losses[-1]):.4f}", flush=True)
    losses = [float(v) for v in jax.device_get(losses)]
    seconds = time.perf_counter() - t
    pred = [steps.predict(state, val_x[i : i + 16].transpose(0, 2, 3, 1)) for i in range(0, len(val_x), 16)]
    return losses, np.concatenate([np.asarray(p)[..., 0] for p in pred]), init, seconds


def score(pred: np.ndarray, truth: np.ndarray, unit: float) -> dict[str, float]:
    per = jax.device_get(jax.jit(metrics.per_sample)(pred, truth))
    return metrics.summarize({k: np.asarray(v) for k, v in per.items()}, unit)


def rel_diff(a: list[float], b: list[float]) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b) / np.abs(b)


def plot(losses: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(2, 1))
    for name, values in losses.items():
        top.plot(np.arange(1, len(values) + 1), values, label=name, lw=1)
    top.set_yscale("log")
    top.set_ylabel("training loss (L1 + L2)")
    top.legend()
    ref = losses["PyTorch"]
    for name in ("fwi_jax", CONTROL):
        bottom.plot(
            np.arange(1, len(ref) + 1), rel_diff(losses[name], ref), label=f"|{name} - PyTorch| / PyTorch", lw=1
        )
    bottom.set_yscale("log")
    bottom.set_xlabel("step")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--picture", default=str(PICTURE))
    p.add_argument("--lr", type=float, default=0.0, help="peak learning rate (default: the quickstart's 1e-3)")
    p.add_argument("--smoke", action="store_true", help="the quickstart's smoke sizes: checks the script")
    a = p.parse_args()
    python = torchenv.require_torch_python()
    config = quickstart_config("smoke" if a.smoke else None)
    # The recipe of the committed results (the quickstart's until 2026-11-30), exact-solver data.
    config.data.mode, config.batch_size = "exact", 16
    config.optim.update(lr=1e-3, decay="step", milestones=(12,))
    config.progress = False
    if a.lr:
        config.optim.lr = a.lr
    train_src, val_src, spec = open_sources(config)  # generates the quickstart data once (cached)
    mesh = parallel.make_mesh()
    steps = make_steps(config, spec, mesh, pipeline.steps_per_epoch(len(train_src), config.batch_size))
    indices = [pipeline.batch_indices(len(train_src), config.batch_size, config.seed, s) for s in range(a.steps)]
    print(f"normalizing {len(train_src)} training and {len(val_src)} validation samples ...", flush=True)
    xs, ys = normalized(train_src)
    val_x, val_y = normalized(val_src)
    print(f"fwi_jax: {a.steps} steps of the {config.model.dims} widths at batch {config.batch_size} ...", flush=True)
    jax_losses, jax_pred, init, jax_s = train_jax(steps, xs, ys, indices, val_x)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_pth(variables_to_state_dict(init), tmp / "init.pth")
        for name, arr in (("train_seismic", xs), ("train_velocity", ys), ("val_seismic", val_x)):
            np.save(tmp / f"{name}.npy", arr)
        o = config.optim
        run_spec = {
            "init": str(tmp / "init.pth"),
            "dims": list(PRESETS[config.model.dims]),
            "train_seismic": str(tmp / "train_seismic.npy"),
            "train_velocity": str(tmp / "train_velocity.npy"),
            "val_seismic": str(tmp / "val_seismic.npy"),
            "indices": [[int(i) for i in idx] for idx in indices],
            "optim": {
                "lr": [float(steps.schedule(s)) for s in range(a.steps)],
                "b1": o.b1,
                "b2": o.b2,
                "eps": o.eps,
                "weight_decay": o.weight_decay,
            },  # fmt: skip
            "prefix": str(tmp / "torch"),
        }
        (tmp / "spec.json").write_text(json.dumps(run_spec))
        torch_runs = {}
        for name, threads in (("PyTorch", 0), (CONTROL, 1)):
            print(f"{name}: {a.steps} steps ...", flush=True)
            args = (tmp / "spec.json", tmp / "out.json", "--threads", threads)
            out = torchenv.run_script(HERE / "_torch_train.py", *args, python=python)
            if out.returncode:
                raise RuntimeError(f"the PyTorch training failed:\n{out.stderr[-3000:]}")
            torch_runs[name] = json.loads((tmp / "out.json").read_text())
            torch_runs[name]["pred"] = np.load(tmp / f"torch_threads{threads}_val_pred.npy")[:, 0]
    report(a, config, jax_losses, jax_pred, jax_s, torch_runs, val_y[:, 0], velocity_unit(spec))


def report(a, config, jax_losses, jax_pred, jax_s, torch_runs, truth, unit) -> None:
    losses = {"fwi_jax": jax_losses, **{k: v["losses"] for k, v in torch_runs.items()}}
    ref = losses["PyTorch"]
    rows = {}
    for name in losses:
        pred = jax_pred if name == "fwi_jax" else torch_runs[name]["pred"]
        rows[name] = {"val": score(pred, truth, unit)}
        if name != "PyTorch":
            d = rel_diff(losses[name], ref)
            rows[name] |= {
                "median_rel_loss_diff_first_50": median(d[:50]),
                "median_rel_loss_diff_last_100": median(d[-100:]),
            }
    tv = rows["PyTorch"]["val"]

    def gaps(v: dict) -> dict[str, float]:
        return {k: abs(v[k] - tv[k]) / abs(tv[k]) for k in ("mae_norm", "rmse_norm")} | {
            "ssim_abs": abs(v["ssim"] - tv["ssim"])
        }

    agreement, control = gaps(rows["fwi_jax"]["val"]), gaps(rows[CONTROL]["val"])
    meets = agreement["mae_norm"] <= 0.02 and agreement["rmse_norm"] <= 0.02 and agreement["ssim_abs"] <= 0.01
    title = f"{a.steps} steps, {config.model.dims} widths, batch {config.batch_size}; validation: {len(truth)} samples"
    table = print_table([{"run": name, **r} for name, r in rows.items()], COLUMNS, title)
    print(
        f"fwi_jax vs PyTorch: MAE {agreement['mae_norm']:.2%}, RMSE {agreement['rmse_norm']:.2%} apart, "
        f"SSIM {agreement['ssim_abs']:.4f} apart: target (2%, 0.01) {'met' if meets else 'MISSED'}"
    )
    print(
        f"{CONTROL} vs PyTorch (rounding alone): MAE {control['mae_norm']:.2%}, RMSE {control['rmse_norm']:.2%}, "
        f"SSIM {control['ssim_abs']:.4f} apart"
    )
    drift = {
        k: rows["fwi_jax"][k] <= rows[CONTROL][k]
        for k in ("median_rel_loss_diff_first_50", "median_rel_loss_diff_last_100")
    }
    print(f"fwi_jax drifts from PyTorch no further than PyTorch from itself (median loss differences): {drift}")
    print(f"seconds: fwi_jax {jax_s:.0f}, PyTorch {torch_runs['PyTorch']['seconds']:.0f}")
    plot(losses, Path(a.picture))
    result = {
        "steps": a.steps,
        "recipe": {
            "dims": config.model.dims,
            "batch": config.batch_size,
            "lr": config.optim.lr,
            "milestones_epochs": list(config.optim.milestones),
            "loss": "l1 + l2",
        },  # fmt: skip
        "runs": rows,
        "agreement_fwi_jax_vs_pytorch": agreement,
        "agreement_control_vs_pytorch": control,
        "fwi_jax_drift_within_control": drift,
        "meets_target": meets,
        "seconds": {"fwi_jax": jax_s, **{k: v["seconds"] for k, v in torch_runs.items()}},
        "torch": torch_runs["PyTorch"]["torch"],
        "losses": losses,
    }
    write_results(a.out, result, table, args=a)
    print(f"wrote {a.picture}")


if __name__ == "__main__":
    main()
