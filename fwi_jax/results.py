"""Published InversionNet numbers to print beside ours (normalized MAE / RMSE, SSIM on [0, 1] maps).

`PAPER` holds the OpenFWI paper's own table (Deng et al., NeurIPS 2022, arXiv 2111.02926). Its digits
have not been verified here, so its entries stay empty (None) until someone fills them from the
paper; fwi_jax prints "not filled in" rather than a guess. `RERUNS` are InversionNet re-runs quoted
by later papers, always shown with their source.
"""

from __future__ import annotations

from fwi_jax.data.datasets import DATASETS

PAPER: dict[str, dict[str, float] | None] = {name: None for name in DATASETS}

DIFFUSIONVEL = "InversionNet re-run quoted by DiffusionVel (arXiv 2410.21776)"
RERUNS: dict[str, list[dict]] = {
    "flatvel-b": [{"source": DIFFUSIONVEL, "mae_norm": 0.0437, "ssim": 0.9343}],
    "curvevel-b": [{"source": DIFFUSIONVEL, "mae_norm": 0.1695, "ssim": 0.6604}],
}


def published(dataset: str) -> list[dict]:
    """Rows of published numbers for a dataset: the paper's (or a 'not filled in' row) and re-runs."""
    paper = PAPER.get(dataset)
    rows = [{"source": "OpenFWI paper (InversionNet)", **(paper or {}), "filled": paper is not None}]
    return rows + [{**r, "filled": True} for r in RERUNS.get(dataset, [])]
