"""Metrics against hand values and a plain-numpy reference SSIM."""

import jax.numpy as jnp
import numpy as np
import pytest

from fwi_jax import metrics


def numpy_reference_ssim(a, b, size=11, sigma=1.5):
    """OpenFWI's SSIM written out with loops: Gaussian window, zero 'same' padding, mean over the map."""
    x = np.arange(size) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    w = np.outer(g, g)
    half = size // 2

    def filt(img):
        padded = np.pad(img, half)
        out = np.zeros_like(img, dtype=np.float64)
        for i in range(img.shape[0]):
            for j in range(img.shape[1]):
                out[i, j] = np.sum(padded[i : i + size, j : j + size] * w)
        return out

    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = filt(a), filt(b)
    s_aa, s_bb, s_ab = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return np.mean(((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2)))


def test_ssim_matches_an_independent_numpy_implementation():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 1, size=(3, 70, 70)).astype(np.float32)
    p = np.clip(t + rng.normal(scale=0.1, size=t.shape), 0, 1).astype(np.float32)
    ours = np.asarray(metrics.ssim(jnp.asarray(p), jnp.asarray(t)))
    ref = [numpy_reference_ssim(p[i], t[i]) for i in range(3)]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert float(metrics.ssim(jnp.asarray(t), jnp.asarray(t))[0]) == pytest.approx(1.0, abs=1e-6)


def test_hand_computed_errors_in_both_spaces():
    target = np.zeros((2, 70, 70), np.float32)
    pred = target.copy()
    pred[0] += 0.1  # sample 0: every pixel off by 0.1 normalized = 150 m/s
    pred[1, :35] += 0.4  # sample 1: half the pixels off by 0.4
    per = {k: np.asarray(v) for k, v in metrics.per_sample(jnp.asarray(pred), jnp.asarray(target)).items()}
    np.testing.assert_allclose(per["mae_norm"], [0.1, 0.2], rtol=1e-6)
    np.testing.assert_allclose(per["mse_norm"], [0.01, 0.08], rtol=1e-5)
    s = metrics.summarize(per, 1500.0)
    assert s["mae_norm"] == pytest.approx(0.15) and s["mae_ms"] == pytest.approx(225.0)
    assert s["mse_norm"] == pytest.approx(0.045) and s["mse_ms"] == pytest.approx(0.045 * 1500**2)
    assert s["rmse_norm"] == pytest.approx(0.045**0.5) and s["rmse_ms"] == pytest.approx(1500 * 0.045**0.5)
    # Masked batch sums (the training loop's form) give the same numbers; padding rows do not count.
    padded_p = np.concatenate([pred, np.ones((1, 70, 70), np.float32)])[..., None]
    padded_t = np.concatenate([target, np.zeros((1, 70, 70), np.float32)])[..., None]
    sums = metrics.metric_sums(jnp.asarray(padded_p), jnp.asarray(padded_t), jnp.asarray([1.0, 1.0, 0.0]))
    fin = metrics.finalize(metrics.accumulate(None, sums), 1500.0)
    for k in ("mae_norm", "mse_norm", "rmse_ms", "ssim"):
        assert fin[k] == pytest.approx(s[k], rel=1e-5)
