"""Source wavelets."""

from __future__ import annotations

import numpy as np


def ricker_length(freq: float, dt: float) -> int:
    """Odd length of the OpenFWI Ricker: 2 * floor(2.2 / (f dt) / 2) + 1 (147 at 15 Hz, 1 ms)."""
    return 2 * int(np.floor(2.2 / (freq * dt) / 2.0)) + 1


def ricker(freq: float, dt: float, nt: int | None = None) -> np.ndarray:
    """Ricker wavelet (1 - 2 (pi f t)^2) exp(-(pi f t)^2), centred in its odd support.

    The peak sits at index ``(ricker_length - 1) // 2`` (73 at 15 Hz, 1 ms). With ``nt`` the
    wavelet is zero-padded (or cut) to ``nt`` samples, as the time loop consumes it.
    """
    if freq <= 0 or dt <= 0:
        raise ValueError(f"ricker needs freq > 0 and dt > 0, got freq={freq}, dt={dt}")
    n = ricker_length(freq, dt)
    t = (np.arange(n) - (n - 1) // 2) * dt
    arg = (np.pi * freq * t) ** 2
    w = (1.0 - 2.0 * arg) * np.exp(-arg)
    if nt is not None:
        w = np.pad(w, (0, max(0, nt - n)))[:nt]
    return w.astype(np.float32)
