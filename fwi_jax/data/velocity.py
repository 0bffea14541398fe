"""Seeded generators of OpenFWI-style velocity maps (m/s, shape (nz, nx), float32).

Families follow the published descriptions of OpenFWI's Vel and Fault families: layered media
with flat or curved interfaces, optionally cut by faults with a vertical throw. "-A" variants
have few layers whose velocity increases with depth; "-B" variants have more layers, velocities
in any order and stronger curvature / more faults. All velocities lie in [1500, 4500] m/s.

Every generator is a pure function of a ``numpy.random.Generator``: the same seed gives the same
map on every machine.
"""

from __future__ import annotations

import dataclasses

import numpy as np

VMIN, VMAX = 1500.0, 4500.0  # OpenFWI label_min / label_max


@dataclasses.dataclass(frozen=True)
class FamilySpec:
    """Knobs of one layered family."""

    layers: tuple[int, int]  # inclusive range of the number of layers
    increasing: bool  # velocity increases with depth ("-A") or is free ("-B")
    curve_amplitude: float  # max interface undulation, in cells (0 = flat)
    curve_waves: tuple[float, float]  # range of the number of sine periods across the model
    faults: tuple[int, int]  # inclusive range of the number of faults
    max_throw: float  # max vertical fault displacement, in cells
    min_step: float = 200.0  # min velocity contrast between neighbouring layers (m/s)


FAMILIES: dict[str, FamilySpec] = {
    "flatvel-a": FamilySpec((2, 4), True, 0.0, (0, 0), (0, 0), 0),
    "flatvel-b": FamilySpec((2, 6), False, 0.0, (0, 0), (0, 0), 0),
    "curvevel-a": FamilySpec((2, 4), True, 6.0, (0.5, 1.5), (0, 0), 0),
    "curvevel-b": FamilySpec((3, 6), False, 12.0, (0.5, 3.0), (0, 0), 0),
    "flatfault-a": FamilySpec((3, 5), True, 0.0, (0, 0), (1, 1), 15),
    "flatfault-b": FamilySpec((4, 8), False, 0.0, (0, 0), (1, 2), 20),
    "curvefault-a": FamilySpec((3, 5), True, 6.0, (0.5, 1.5), (1, 1), 15),
    "curvefault-b": FamilySpec((4, 8), False, 10.0, (0.5, 2.5), (1, 2), 20),
}


def family_names() -> list[str]:
    return list(FAMILIES)


def _layer_velocities(rng: np.random.Generator, n: int, spec: FamilySpec) -> np.ndarray:
    """n layer velocities with neighbouring contrasts >= spec.min_step."""
    for _ in range(100):
        v = rng.uniform(VMIN, VMAX, size=n)
        if spec.increasing:
            v = np.sort(v)
        if n == 1 or np.min(np.abs(np.diff(v))) >= spec.min_step:
            return v
    return np.linspace(VMIN, VMAX, n) if spec.increasing else rng.permutation(np.linspace(VMIN, VMAX, n))


def _interfaces(rng: np.random.Generator, n_layers: int, nz: int, nx: int, spec: FamilySpec):
    """(n_layers - 1, nx) interface depths in cells, increasing downwards and >= 3 cells apart."""
    n_if = n_layers - 1
    cuts = np.sort(rng.choice(np.arange(4, nz - 3), size=n_if, replace=False)).astype(np.float64)
    x = np.arange(nx) / nx
    depth = np.repeat(cuts[:, None], nx, axis=1)
    if spec.curve_amplitude > 0:
        for i in range(n_if):
            amp = rng.uniform(0.3, 1.0) * spec.curve_amplitude
            waves = rng.uniform(*spec.curve_waves)
            phase = rng.uniform(0, 2 * np.pi)
            depth[i] += amp * np.sin(2 * np.pi * waves * x + phase)
    return np.sort(depth, axis=0)  # crossing interfaces swap roles: layers stay ordered


def _layered(depth: np.ndarray, velocities: np.ndarray, zgrid: np.ndarray) -> np.ndarray:
    """Velocity on the grid: layer index = number of interfaces above each cell."""
    layer = (zgrid[None, :, :] >= depth[:, None, :]).sum(axis=0)
    return velocities[layer]


def sample(family: str, rng: np.random.Generator, nz: int = 70, nx: int = 70) -> np.ndarray:
    """One (nz, nx) float32 velocity map of ``family`` in m/s."""
    try:
        spec = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown velocity family {family!r}; choose one of {family_names()}") from None
    n_layers = int(rng.integers(spec.layers[0], spec.layers[1] + 1))
    n_layers = min(n_layers, max(1, (nz - 6) // 3))
    velocities = _layer_velocities(rng, n_layers, spec)
    depth = _interfaces(rng, n_layers, nz, nx, spec) if n_layers > 1 else np.zeros((0, nx))
    zz, xx = np.meshgrid(np.arange(nz, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij")
    n_faults = int(rng.integers(spec.faults[0], spec.faults[1] + 1))
    # Each fault is a line through (0, x0) dipping at angle theta; cells on its hanging-wall side
    # see the layering moved down by `throw` cells.
    shift = np.zeros((nz, nx))
    for _ in range(n_faults):
        x0 = rng.uniform(0.25, 0.75) * nx
        theta = np.deg2rad(rng.uniform(50, 80)) * rng.choice([-1, 1])
        throw = rng.uniform(0.3, 1.0) * spec.max_throw * rng.choice([-1, 1])
        side = (xx - x0) * np.sin(theta) - zz * np.cos(theta) > 0
        shift += np.where(side, throw, 0.0)
    zeff = zz - shift
    # Interfaces are evaluated at the shifted depth: depth varies with x only, so index columns.
    v = _layered(depth, velocities, zeff) if n_layers > 1 else np.full((nz, nx), velocities[0])
    return np.clip(v, VMIN, VMAX).astype(np.float32)


def generate(family: str, num: int, seed: int, nz: int = 70, nx: int = 70, start: int = 0) -> np.ndarray:
    """Maps ``start .. start + num - 1`` of the stream for (family, seed): (num, nz, nx) float32.

    Map i depends only on (family, seed, i), so any slice of the stream is reproducible alone
    (a resumed generation run makes the same maps as an uninterrupted one).
    """
    if num < 0 or start < 0:
        raise ValueError(f"num and start must be >= 0, got num={num}, start={start}")
    key = sum(ord(c) * 131**k for k, c in enumerate(family)) % (2**31)
    out = np.empty((num, nz, nx), np.float32)
    for j in range(num):
        rng = np.random.default_rng([seed, key, start + j])
        out[j] = sample(family, rng, nz, nx)
    return out
