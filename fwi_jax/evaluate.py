"""Evaluate a trained checkpoint on a split: metrics table, per-sample CSV, JSON summary, pictures.

    python -m fwi_jax.evaluate --workdir runs/quickstart [--checkpoint best|latest|STEP] [--split val]

Writes <workdir>/eval/<split>-<checkpoint>-step<N>/: metrics.json, per_sample.csv, predictions.png
(best, median and worst samples), profiles.png, gathers.png and curves.png (from metrics.jsonl).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax
import numpy as np

from fwi_jax import inference, metrics, viz
from fwi_jax.cli import ArgumentParser
from fwi_jax.data import pipeline
from fwi_jax.data.open import open_sources
from fwi_jax.data.transforms import velocity_unit
from fwi_jax.fileio import atomic_path, atomic_write_text, check_output_dir
from fwi_jax.published import published_rows

ROWS = (("MAE", "mae"), ("MSE", "mse"), ("RMSE", "rmse"))


def evaluate(
    workdir: str | Path,
    checkpoint: str = "best",
    split: str = "val",
    batch_size: int = 0,
    data_root: str | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Per-sample metrics of every sample of ``split``; writes the report files and returns the summary."""
    trained = inference.load(workdir, checkpoint)
    config = trained.config
    if data_root:
        config.data.root = data_root
    train_src, val_src, _ = open_sources(config)
    if split not in ("train", "val"):
        raise ValueError(f"--split must be 'train' or 'val', got {split!r}")
    source = val_src if split == "val" else train_src
    source.spec = trained.spec  # the checkpoint's normalization
    bs = batch_size or config.eval_batch_size or config.batch_size
    per = score(trained, source, bs, config.data.num_threads, f"evaluating {split}" if progress else "")
    unit = velocity_unit(trained.spec)
    summary = metrics.summarize(per, unit)

    out = Path(out) if out else trained.workdir / "eval" / f"{split}-{trained.label}-step{trained.step}"
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "per_sample.csv", per, unit, source)
    pictures = _pictures(out, trained, source, per)
    report = {
        "workdir": str(trained.workdir),
        "checkpoint": trained.label,
        "step": trained.step,
        "split": split,
        "dataset": trained.spec.name,
        "data_source": config.data.source,
        "metrics": summary,
        "model": model_name(config),
        "published": published_rows(trained.spec.name, model_name(config)),
        "pictures": [p.name for p in pictures],
        "spaces": "mae/mse/rmse_norm: normalized [-1, 1] maps; *_ms: m/s; ssim: maps rescaled to [0, 1]",
    }
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=2) + "\n")
    report["out"] = str(out)
    return report


def score(trained: inference.Trained, source, batch_size: int, num_threads: int = 4, progress: str = "") -> dict:
    """Per-sample ``mae_norm``, ``mse_norm`` and ``ssim`` of ``trained`` on every sample of ``source``
    (normalized by ``source.spec``); ``progress``: a progress bar's label, "" for none."""
    n_dev = trained.mesh.devices.size
    bs = -(-batch_size // n_dev) * n_dev
    per_fn = jax.jit(metrics.per_sample)
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in ("mae_norm", "mse_norm", "ssim")}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(source), unit="sample", desc=progress, dynamic_ncols=True)
    for batch in pipeline.eval_batches(source, bs, num_threads=num_threads):
        pred = trained.predict_normalized(batch["seismic"])
        per = jax.device_get(per_fn(pred, batch["velocity"][..., 0]))
        keep = batch["mask"] > 0
        for k in chunks:
            chunks[k].append(np.asarray(per[k])[keep])
        if bar is not None:
            bar.update(int(keep.sum()))
    if bar is not None:
        bar.close()
    return {k: np.concatenate(v) for k, v in chunks.items()}


def model_name(config) -> str:
    """The reference's name of the model a config trains ("velocitygan" for the adversarial objective)."""
    return "velocitygan" if config.loss.objective == "velocitygan" else config.model.name


def _write_csv(path: Path, per: dict[str, np.ndarray], unit: float, source) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "origin", "mae_norm", "mae_ms", "mse_norm", "mse_ms", "rmse_norm", "rmse_ms", "ssim"])
        for i in range(len(per["mae_norm"])):
            mae, mse = float(per["mae_norm"][i]), float(per["mse_norm"][i])
            w.writerow(
                [i, source.describe(i)]
                + [f"{x:.6g}" for x in (mae, mae * unit, mse, mse * unit**2, mse**0.5, mse**0.5 * unit)]
                + [f"{float(per['ssim'][i]):.6f}"]
            )


def _pictures(out: Path, trained: inference.Trained, source, per: dict[str, np.ndarray]) -> list[Path]:
    """Best, median and worst samples by MAE: maps, profiles (worst) and gathers (median)."""
    order = np.argsort(per["mae_norm"])
    picks = {"best": int(order[0]), "median": int(order[len(order) // 2]), "worst": int(order[-1])}
    raw = {name: source[i] for name, i in picks.items()}
    examples = [pipeline.to_example(s, v, trained.spec) for s, v in raw.values()]
    seis = np.stack([e[0] for e in examples])
    n_dev = trained.mesh.devices.size
    pad = -len(seis) % n_dev
    seis = np.concatenate([seis, np.zeros((pad, *seis.shape[1:]), seis.dtype)])
    pred = trained.predict_normalized(seis)[: len(examples)]
    truth = np.stack([e[1][..., 0] for e in examples])
    labels = [f"{name}: #{i}" for name, i in picks.items()]
    paths = [
        viz.save_prediction_grid(out / "predictions.png", truth, pred, trained.spec, labels),
        viz.save_velocity_profiles(out / "profiles.png", truth[2], pred[2], trained.spec),
        viz.save_shot_gathers(out / "gathers.png", raw["median"][0], title=f"{source.describe(picks['median'])}"),
    ]
    jsonl = trained.workdir / "metrics.jsonl"
    if jsonl.exists():
        try:
            paths.append(viz.save_training_curves(out / "curves.png", jsonl))
        except ValueError:
            pass  # a run that has not logged yet
    return paths


def format_report(r: dict) -> str:
    m = r["metrics"]
    lines = [
        f"{r['workdir']}: {r['model']}, {r['checkpoint']} checkpoint (step {r['step']}) on {r['split']}: "
        f"{m['samples']} samples of {r['dataset']} ({r['data_source']} data)",
        "| metric | normalized [-1, 1] | m/s |",
        "|---|---|---|",
    ]
    for name, key in ROWS:
        unit = " (m/s)^2" if key == "mse" else ""
        lines.append(f"| {name} | {m[key + '_norm']:.4f} | {m[key + '_ms']:.1f}{unit} |")
    lines.append(f"| SSIM (maps rescaled to [0, 1]) | {m['ssim']:.4f} | |")
    comparable = "" if r["data_source"] != "generated" else " (ours is on generated data: not comparable)"
    for row in r["published"]:
        if row["filled"]:
            vals = ", ".join(f"{k} {row[k]:.4f}" for k in ("mae_norm", "rmse_norm", "ssim") if k in row)
            lines.append(f"published, {row['source']}: {vals}{comparable}")
        else:
            lines.append(f"published, {row['source']}: none for this dataset (fwi_jax/published.py)")
    lines.append(f"wrote {r['out']}/ (metrics.json, per_sample.csv, {', '.join(r['pictures'])})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m fwi_jax.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="a training run's --workdir")
    p.add_argument("--checkpoint", default="best", help="best (default), latest or a step number")
    p.add_argument("--split", default="val", choices=("val", "train"))
    p.add_argument("--batch-size", type=int, default=0, help="default: the run's eval batch size")
    p.add_argument("--data-root", default=None, help="the dataset's folder, if it moved since training")
    p.add_argument("--out", default=None, help="report folder (default: <workdir>/eval/...)")
    a = p.parse_args(argv)
    try:
        if a.out:
            check_output_dir(a.out, "--out", inputs=(a.workdir, a.data_root))
        r = evaluate(a.workdir, a.checkpoint, a.split, a.batch_size, a.data_root, a.out)
    except (ValueError, FileNotFoundError) as e:
        p.exit(2, f"error: {e}\n")
    print(format_report(r))


if __name__ == "__main__":
    from fwi_jax.cpu_runtime import use_transparent_hugepages

    use_transparent_hugepages()
    main()
