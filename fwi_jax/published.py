"""Published numbers to print beside ours (normalized MAE / RMSE, SSIM on [0, 1] maps).

`BENCHMARK_PAGE` is the table on the OpenFWI project website's benchmark page
(openfwi-lanl.github.io, benchmark page; not checked against the paper's PDF): InversionNet on all ten
datasets, VelocityGAN and UPFWI where the page gives them, each trained with the l1 and the l2
loss ("l1" / "l2" rows; UPFWI has one, its own loss). `RERUNS` are InversionNet re-runs quoted by
later papers, always shown with their source.
"""

from __future__ import annotations

SOURCE = "OpenFWI benchmark page"

# dataset -> model -> loss -> (MAE, RMSE, SSIM)
_Row = tuple[float, float, float]
BENCHMARK_PAGE: dict[str, dict[str, dict[str, _Row]]] = {
    "flatvel-a": {
        "inversionnet": {"l1": (0.0131, 0.0211, 0.9895), "l2": (0.0111, 0.0180, 0.9887)},
        "velocitygan": {"l1": (0.0118, 0.0178, 0.9916), "l2": (0.0605, 0.0783, 0.9453)},
        "upfwi": {"l1 + l2 + perceptual": (0.0621, 0.1233, 0.9563)},
    },
    "flatvel-b": {"inversionnet": {"l1": (0.0351, 0.0876, 0.9461), "l2": (0.0417, 0.0909, 0.9402)}},
    "curvevel-a": {"inversionnet": {"l1": (0.0685, 0.1273, 0.8074), "l2": (0.0690, 0.1202, 0.8223)}},
    "curvevel-b": {"inversionnet": {"l1": (0.1497, 0.2891, 0.6727), "l2": (0.1624, 0.2801, 0.6661)}},
    "flatfault-a": {"inversionnet": {"l1": (0.0172, 0.0426, 0.9766), "l2": (0.0174, 0.0362, 0.9798)}},
    "flatfault-b": {"inversionnet": {"l1": (0.1055, 0.1741, 0.7208), "l2": (0.1106, 0.1723, 0.7186)}},
    "curvefault-a": {
        "inversionnet": {"l1": (0.0260, 0.0650, 0.9566), "l2": (0.0280, 0.0602, 0.9593)},
        "velocitygan": {"l1": (0.0258, 0.0606, 0.9613), "l2": (0.0216, 0.0505, 0.9687)},
        "upfwi": {"l1 + l2 + perceptual": (0.0500, 0.0966, 0.9495)},
    },
    "curvefault-b": {"inversionnet": {"l1": (0.1646, 0.2477, 0.6163), "l2": (0.1669, 0.2412, 0.6053)}},
    "style-a": {"inversionnet": {"l1": (0.0625, 0.1024, 0.8859), "l2": (0.0610, 0.0989, 0.8910)}},
    "style-b": {"inversionnet": {"l1": (0.0689, 0.1614, 0.6314), "l2": (0.0586, 0.0893, 0.7599)}},
}

DIFFUSIONVEL = "InversionNet re-run quoted by DiffusionVel (arXiv 2410.21776)"
RERUNS: dict[str, list[dict]] = {
    "flatvel-b": [{"source": DIFFUSIONVEL, "mae_norm": 0.0437, "ssim": 0.9343}],
    "curvevel-b": [{"source": DIFFUSIONVEL, "mae_norm": 0.1695, "ssim": 0.6604}],
}


def published_rows(dataset: str, model: str = "inversionnet") -> list[dict]:
    """Rows of published numbers for a dataset, ``model``'s first, then the other models' and re-runs."""
    models = BENCHMARK_PAGE.get(dataset, {})
    order = sorted(models, key=lambda m: (m != model, m))
    rows = [
        {"source": f"{SOURCE} ({name}, {loss} loss)", "mae_norm": mae, "rmse_norm": rmse, "ssim": ssim, "filled": True}
        for name in order
        for loss, (mae, rmse, ssim) in models[name].items()
    ]
    if not rows:
        rows = [{"source": f"{SOURCE} (InversionNet)", "filled": False}]
    return rows + [{**r, "filled": True} for r in RERUNS.get(dataset, [])]
