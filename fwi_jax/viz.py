"""Pictures (matplotlib, PNG): velocity maps, predictions against ground truth, shot gathers,
velocity profiles and training curves; `python -m fwi_jax.viz` makes them from files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fwi_jax.cli import ArgumentParser
from fwi_jax.data import velocity  # noqa: E402
from fwi_jax.data.datasets import DatasetSpec  # noqa: E402
from fwi_jax.data.transforms import denormalize_velocity  # noqa: E402
from fwi_jax.fileio import atomic_path, check_output_file, read_jsonl  # noqa: E402


def save_prediction_grid(
    path: str | Path, truth: np.ndarray, pred: np.ndarray, spec: DatasetSpec, labels: list[str] | None = None
) -> Path:
    """Rows of ground truth | prediction | error, maps given normalized (N, H, W); shown in m/s."""
    truth, pred = denormalize_velocity(np.asarray(truth), spec), denormalize_velocity(np.asarray(pred), spec)
    n = len(truth)
    fig, axes = plt.subplots(n, 3, figsize=(9, 2.8 * n), squeeze=False, constrained_layout=True)
    err_lim = max(float(np.abs(pred - truth).max()), 1.0)
    for i in range(n):
        for j, (img, title) in enumerate(((truth[i], "ground truth"), (pred[i], "prediction"))):
            im = axes[i, j].imshow(img, cmap="jet", vmin=spec.label_min, vmax=spec.label_max)
            axes[i, j].set_title(title if i == 0 else "")
        err = axes[i, 2].imshow(pred[i] - truth[i], cmap="seismic", vmin=-err_lim, vmax=err_lim)
        mae = float(np.abs(pred[i] - truth[i]).mean())
        axes[i, 2].set_title(f"error (MAE {mae:.0f} m/s)")
        if labels:
            axes[i, 0].set_ylabel(labels[i], fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:, :2], label="velocity (m/s)", shrink=0.8)
    fig.colorbar(err, ax=axes[:, 2], label="prediction - truth (m/s)", shrink=0.8)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Written whole or not at all (an interrupted save leaves the old picture), parents created."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=80, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def save_shot_gathers(
    path: str | Path, seismic: np.ndarray, dt: float = 0.001, clip_percentile: float = 99.0, title: str = ""
) -> Path:
    """One panel per shot of a raw (S, T, R) gather; amplitudes clipped at +-the percentile of |p|
    (the direct wave would otherwise hide the reflections)."""
    seismic = np.asarray(seismic)
    clip = float(np.percentile(np.abs(seismic), clip_percentile)) or 1.0
    shots, nt, nr = seismic.shape
    fig, axes = plt.subplots(1, shots, figsize=(2.0 * shots, 4.2), squeeze=False, constrained_layout=True)
    for k, ax in enumerate(axes[0]):
        im = ax.imshow(seismic[k], cmap="gray", vmin=-clip, vmax=clip, aspect="auto", extent=(0, nr, nt * dt, 0))
        ax.set_title(f"shot {k}", fontsize=9)
        ax.set_xlabel("receiver")
    axes[0, 0].set_ylabel("time (s)")
    fig.colorbar(im, ax=axes, label=f"pressure (clipped at {clip_percentile:g}th percentile)", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def save_velocity_profiles(
    path: str | Path,
    truth: np.ndarray,
    pred: np.ndarray,
    spec: DatasetSpec,
    columns: tuple[int, ...] | None = None,
    dx: float = 10.0,
) -> Path:
    """Vertical velocity profiles (m/s against depth) of normalized (H, W) maps at a few columns."""
    truth, pred = denormalize_velocity(np.asarray(truth), spec), denormalize_velocity(np.asarray(pred), spec)
    h, w = truth.shape
    columns = columns or (w // 6, w // 2, w - 1 - w // 6)
    depth = np.arange(h) * dx
    fig, axes = plt.subplots(1, len(columns), figsize=(2.6 * len(columns), 3.8), sharey=True, constrained_layout=True)
    for ax, c in zip(np.atleast_1d(axes), columns, strict=True):
        ax.plot(truth[:, c], depth, "k-", label="ground truth")
        ax.plot(pred[:, c], depth, "r--", label="prediction")
        ax.set_title(f"x = {c * dx:.0f} m", fontsize=9)
        ax.set_xlabel("velocity (m/s)")
        ax.set_xlim(spec.label_min - 100, spec.label_max + 100)
    first = np.atleast_1d(axes)[0]
    first.set_ylabel("depth (m)")
    first.invert_yaxis()
    first.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def read_metrics(jsonl: str | Path) -> dict[str, list[dict]]:
    """metrics.jsonl rows by split (a resumed run appends; the last row of a step wins)."""
    rows: dict[str, dict[int, dict]] = {}
    for r in read_jsonl(jsonl):  # a torn or malformed line is skipped with a warning
        if "split" in r and "step" in r:
            rows.setdefault(r["split"], {})[r["step"]] = r
    return {split: [by_step[k] for k in sorted(by_step)] for split, by_step in rows.items()}


def save_training_curves(path: str | Path, jsonl: str | Path) -> Path:
    """Training and validation loss, validation MAE (m/s) and SSIM against step."""
    rows = read_metrics(jsonl)
    train, val = rows.get("train", []), rows.get("val", [])
    if not train and not val:
        raise ValueError(f"{jsonl} holds no metrics yet")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    if train:
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    if val:
        steps = [r["step"] for r in val]
        axes[0].plot(steps, [r["loss"] for r in val], "o-", label="validation")
        axes[1].plot(steps, [r["mae_ms"] for r in val], "o-", color="C1")
        axes[2].plot(steps, [r["ssim"] for r in val], "o-", color="C2")
    axes[0].set_yscale("log")
    axes[0].set_title("loss (l1 L1 + l2 L2, normalized)")
    axes[0].legend()
    axes[1].set_title("validation MAE (m/s)")
    axes[2].set_title("validation SSIM")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def save_family_grid(
    path: str | Path,
    maps: dict[str, np.ndarray],
    vmin: float = 1500,
    vmax: float = 4500,
    columns: list[str] | None = None,
) -> Path:
    """One row of velocity maps (m/s) per family; ``columns`` titles the first row."""
    names = list(maps)
    cols = max(len(m) for m in maps.values())
    fig, axes = plt.subplots(
        len(names), cols, figsize=(1.6 * cols, 1.7 * len(names)), squeeze=False, constrained_layout=True
    )
    for r, name in enumerate(names):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(maps[name]):
                im = ax.imshow(maps[name][c], cmap="jet", vmin=vmin, vmax=vmax)
            if columns and r == 0 and c < len(columns):
                ax.set_title(columns[c], fontsize=9)
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.colorbar(im, ax=axes, label="velocity (m/s)", shrink=0.6)
    return _save(fig, path)


def save_inversion(
    path: str | Path,
    start: np.ndarray,
    result: np.ndarray,
    truth: np.ndarray | None = None,
    vmin: float = 1500,
    vmax: float = 4500,
    title: str = "",
) -> Path:
    """start | FWI result | truth | error of one (H, W) m/s model; without truth the error panel
    shows the update (result - start)."""
    panels = [(start, "start"), (result, "FWI result")] + ([(truth, "truth")] if truth is not None else [])
    diff, label = (result - truth, "result - truth") if truth is not None else (result - start, "result - start")
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.0 * (len(panels) + 1), 3.0), constrained_layout=True)
    for ax, (img, name) in zip(axes, panels, strict=False):
        im = ax.imshow(img, cmap="jet", vmin=vmin, vmax=vmax)
        mae = f" (MAE {np.abs(img - truth).mean():.0f} m/s)" if truth is not None and img is not truth else ""
        ax.set_title(name + mae, fontsize=9)
    lim = max(float(np.abs(diff).max()), 1.0)
    err = axes[-1].imshow(diff, cmap="seismic", vmin=-lim, vmax=lim)
    axes[-1].set_title(label, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:-1], label="velocity (m/s)", shrink=0.8)
    fig.colorbar(err, ax=axes[-1], label="m/s", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def main(argv: list[str] | None = None) -> None:
    """python -m fwi_jax.viz {families,curves,gathers,velocity} ..."""

    p = ArgumentParser(prog="python -m fwi_jax.viz", description="Pictures of fwi_jax data and runs.")
    sub = p.add_subparsers(dest="what", required=True)
    fam = sub.add_parser("families", help="a grid of generated velocity maps, one row per family")
    fam.add_argument("--per-family", type=int, default=6)
    fam.add_argument("--seed", type=int, default=0)
    cur = sub.add_parser("curves", help="training curves of a run (its metrics.jsonl)")
    cur.add_argument("--workdir", required=True)
    gat = sub.add_parser("gathers", help="the shot gathers of one sample of an OpenFWI seismic .npy")
    gat.add_argument("--input", required=True, help="(N, 5, 1000, 70) .npy")
    gat.add_argument("--index", type=int, default=0)
    gat.add_argument("--clip", type=float, default=99.0, help="clip percentile of |amplitude|")
    vel = sub.add_parser("velocity", help="velocity maps of an OpenFWI velocity .npy (N, 1, 70, 70), m/s")
    vel.add_argument("--input", required=True)
    vel.add_argument("--num", type=int, default=6)
    for sp in (fam, cur, gat, vel):
        sp.add_argument("--out", required=True, help="PNG file to write")
    a = p.parse_args(argv)
    try:
        check_output_file(a.out, "--out", inputs=(getattr(a, "input", None),), example="picture.png")
        if a.what == "families":
            maps = {name: velocity.generate(name, a.per_family, a.seed) for name in velocity.family_names()}
            out = save_family_grid(a.out, maps)
        elif a.what == "curves":
            out = save_training_curves(a.out, Path(a.workdir) / "metrics.jsonl")
        elif a.what == "gathers":
            data = np.load(a.input, mmap_mode="r")
            if data.ndim != 4 or not 0 <= a.index < len(data):
                raise ValueError(
                    f"{a.input} has shape {data.shape}; need (N, shots, time, receivers) and 0 <= index < N"
                )
            out = save_shot_gathers(
                a.out, np.asarray(data[a.index]), clip_percentile=a.clip, title=f"{a.input} [{a.index}]"
            )
        else:
            maps = np.load(a.input, mmap_mode="r")
            if maps.ndim != 4 or maps.shape[1] != 1:
                raise ValueError(f"{a.input} has shape {maps.shape}; expected (N, 1, H, W) velocities in m/s")
            out = save_family_grid(a.out, {Path(a.input).name: np.asarray(maps[: a.num, 0])})
    except (OSError, ValueError) as e:
        p.exit(2, f"error: {e}\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
