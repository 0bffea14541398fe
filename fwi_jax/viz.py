"""Pictures (matplotlib, PNG): velocity maps, predictions against ground truth."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fwi_jax.data.datasets import DatasetSpec  # noqa: E402
from fwi_jax.data.transforms import denormalize_velocity  # noqa: E402


def save_prediction_grid(path: str | Path, truth: np.ndarray, pred: np.ndarray, spec: DatasetSpec) -> Path:
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
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:, :2], label="velocity (m/s)", shrink=0.8)
    fig.colorbar(err, ax=axes[:, 2], label="prediction - truth (m/s)", shrink=0.8)
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def save_family_grid(path: str | Path, maps: dict[str, np.ndarray], vmin: float = 1500, vmax: float = 4500) -> Path:
    """One row of velocity maps (m/s) per family."""
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
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.colorbar(im, ax=axes, label="velocity (m/s)", shrink=0.6)
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    """python -m fwi_jax.viz families --out docs/families.png [--per-family 6] [--seed 0]"""
    import argparse

    from fwi_jax.data import velocity

    p = argparse.ArgumentParser(prog="python -m fwi_jax.viz", description="Pictures of fwi_jax data.")
    sub = p.add_subparsers(dest="what", required=True)
    fam = sub.add_parser("families", help="a grid of generated velocity maps, one row per family")
    fam.add_argument("--out", required=True)
    fam.add_argument("--per-family", type=int, default=6)
    fam.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    maps = {name: velocity.generate(name, a.per_family, a.seed) for name in velocity.family_names()}
    print(f"wrote {save_family_grid(a.out, maps)}")


if __name__ == "__main__":
    main()
