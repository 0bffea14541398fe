"""Losses and the reference's evaluation metrics, as (sum, count) reductions inside jit.

Spaces: MAE / MSE / RMSE are reported on normalized [-1, 1] maps and in m/s; SSIM on maps
rescaled to [0, 1] exactly as OpenFWI's test.py (11 x 11 Gaussian window, sigma 1.5, zero 'same'
padding, C1 = 0.01^2, C2 = 0.03^2, mean over the map).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def loss_fn(pred: jax.Array, target: jax.Array, l1: float, l2: float) -> tuple[jax.Array, dict]:
    """lambda1 * L1 + lambda2 * L2 on normalized maps (the reference's loss)."""
    diff = pred - target
    mae = jnp.mean(jnp.abs(diff))
    mse = jnp.mean(diff**2)
    return l1 * mae + l2 * mse, {"l1": mae, "l2": mse}


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g).astype(np.float32)


def _filter(x: jax.Array, window: jax.Array) -> jax.Array:
    """(B, H, W) 'same' correlation with zero padding."""
    k = window.shape[0]
    return jax.lax.conv_general_dilated(
        x[:, None], window[None, None], (1, 1), [(k // 2, k // 2)] * 2, precision=jax.lax.Precision.HIGHEST
    )[:, 0]


def ssim(a: jax.Array, b: jax.Array, window_size: int = 11, sigma: float = 1.5) -> jax.Array:
    """Per-sample SSIM of (B, H, W) maps in [0, 1] (reference definition)."""
    w = jnp.asarray(gaussian_window(window_size, sigma))
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = _filter(a, w), _filter(b, w)
    saa = _filter(a * a, w) - mu_a**2
    sbb = _filter(b * b, w) - mu_b**2
    sab = _filter(a * b, w) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2)
    return jnp.mean(num / den, axis=(1, 2))


def metric_sums(pred: jax.Array, target: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """Masked sums over a batch of normalized (B, H, W, 1) maps; reduce with `finalize`."""
    p, t = pred[..., 0].astype(jnp.float32), target[..., 0].astype(jnp.float32)
    m = mask.astype(jnp.float32)
    pixels = p.shape[1] * p.shape[2]
    err = p - t
    return {
        "abs_err": jnp.sum(jnp.sum(jnp.abs(err), axis=(1, 2)) * m),
        "sq_err": jnp.sum(jnp.sum(err**2, axis=(1, 2)) * m),
        "ssim": jnp.sum(ssim(p / 2 + 0.5, t / 2 + 0.5) * m),
        "pixels": jnp.sum(m) * pixels,
        "samples": jnp.sum(m),
    }


def per_sample(pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """Per-sample MAE, MSE (normalized units) and SSIM of normalized (B, H, W) maps."""
    p, t = pred.astype(jnp.float32), target.astype(jnp.float32)
    err = p - t
    return {
        "mae_norm": jnp.mean(jnp.abs(err), axis=(1, 2)),
        "mse_norm": jnp.mean(err**2, axis=(1, 2)),
        "ssim": ssim(p / 2 + 0.5, t / 2 + 0.5),
    }


def summarize(per: dict[str, np.ndarray], unit: float) -> dict[str, float]:
    """Dataset metrics from per-sample arrays (every sample has the same pixel count, so the mean of
    per-sample MAE / MSE is the global pixel mean; RMSE = sqrt of the global MSE)."""
    n = len(per["mae_norm"])
    sums = {
        "abs_err": float(np.sum(per["mae_norm"])),
        "sq_err": float(np.sum(per["mse_norm"])),
        "ssim": float(np.sum(per["ssim"])),
        "pixels": n,
        "samples": n,
    }
    return finalize(sums, unit)


def finalize(sums: dict[str, float], unit: float) -> dict[str, float]:
    """Global metrics from accumulated sums: MAE/MSE/RMSE normalized and in m/s (``unit`` m/s per
    normalized unit, 1500 for OpenFWI), SSIM."""
    mae = float(sums["abs_err"]) / float(sums["pixels"])
    mse = float(sums["sq_err"]) / float(sums["pixels"])
    return {
        "mae_norm": mae,
        "mse_norm": mse,
        "rmse_norm": mse**0.5,
        "mae_ms": mae * unit,
        "mse_ms": mse * unit**2,
        "rmse_ms": mse**0.5 * unit,
        "ssim": float(sums["ssim"]) / float(sums["samples"]),
        "samples": int(sums["samples"]),
    }


def accumulate(total: dict | None, sums: dict) -> dict:
    sums = {k: np.asarray(v, np.float64) for k, v in sums.items()}
    if total is None:
        return sums
    return {k: total[k] + v for k, v in sums.items()}


def describe(m: dict[str, float]) -> str:
    """One line naming the space of every number."""
    return (
        f"MAE {m['mae_norm']:.4f} (normalized) = {m['mae_ms']:.1f} m/s | "
        f"RMSE {m['rmse_norm']:.4f} (normalized) = {m['rmse_ms']:.1f} m/s | SSIM {m['ssim']:.4f}"
    )
