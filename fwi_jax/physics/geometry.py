"""Acquisition geometry and grid settings, with the OpenFWI defaults."""

from __future__ import annotations

import dataclasses
import math

# Largest v dt / dx for the leapfrog 2nd-order-time / 4th-order-space 2D scheme: the 4th-order
# Laplacian symbol peaks at 32/3 / dx^2, and leapfrog needs (v dt)^2 * 32/3 / dx^2 <= 4.
CFL_LIMIT_O4 = math.sqrt(3.0 / 8.0)

OPENFWI_SOURCE_COLUMNS = (1, 18, 35, 53, 70)  # x = 10, 180, 350, 530, 700 m


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Grid, time axis, wavelet and acquisition layout of a survey.

    Positions are 0-based (row, column) cell indices in the model grid; positions up to ``nbc``
    cells outside the model lie in the edge-padded zone (OpenFWI's last source and receiver do).
    """

    nz: int = 70
    nx: int = 70
    dx: float = 10.0  # m, both axes (OpenFWI dx)
    nt: int = 1000  # recorded samples, one per step (OpenFWI nt)
    dt: float = 1e-3  # s (OpenFWI dt)
    freq: float = 15.0  # Hz, Ricker peak frequency (OpenFWI f)
    src_x: tuple[int, ...] = OPENFWI_SOURCE_COLUMNS
    src_z: int = 1  # OpenFWI sz = 10 m
    rec_x: tuple[int, ...] = tuple(range(1, 71))
    rec_z: int = 1  # OpenFWI gz = 10 m
    nbc: int = 120  # absorbing cells per side in exact mode (OpenFWI nbc)

    def __post_init__(self) -> None:
        if min(self.nz, self.nx, self.nt) < 1 or self.dx <= 0 or self.dt <= 0 or self.freq <= 0:
            raise ValueError(f"Geometry needs positive sizes and steps, got {self}")
        if not self.src_x or not self.rec_x:
            raise ValueError("Geometry needs at least one source and one receiver")
        for name, cols, row in (("source", self.src_x, self.src_z), ("receiver", self.rec_x, self.rec_z)):
            for c in cols:
                if not (-self.nbc < c < self.nx + self.nbc and -self.nbc < row < self.nz + self.nbc):
                    raise ValueError(
                        f"{name} at (row {row}, column {c}) lies outside the padded grid of a "
                        f"{self.nz} x {self.nx} model with nbc={self.nbc}"
                    )

    @property
    def num_shots(self) -> int:
        return len(self.src_x)

    @property
    def num_receivers(self) -> int:
        return len(self.rec_x)

    def max_stable_velocity(self) -> float:
        """Largest velocity (m/s) the 2-4 leapfrog scheme is stable for at this dt and dx."""
        return CFL_LIMIT_O4 * self.dx / self.dt

    def check_cfl(self, vmax: float) -> None:
        """Raise ValueError when ``vmax`` makes the time stepping unstable."""
        courant = vmax * self.dt / self.dx
        if courant > CFL_LIMIT_O4:
            raise ValueError(
                f"unstable time step: v_max dt / dx = {vmax:.1f} * {self.dt:g} / {self.dx:g} = "
                f"{courant:.3f} exceeds the 2-4 scheme's limit {CFL_LIMIT_O4:.3f}; use "
                f"dt <= {CFL_LIMIT_O4 * self.dx / vmax:.3g} s, a larger dx, or velocities <= "
                f"{self.max_stable_velocity():.0f} m/s"
            )


def openfwi_geometry(layout: str = "released", **overrides) -> Geometry:
    """OpenFWI acquisition: 5 sources and 70 receivers at 10 m depth.

    ``layout="released"`` (default) reproduces the released data: receivers at x = 10 .. 700 m,
    sources at x = 10, 180, 350, 530, 700 m, with model columns at x = 0 .. 690 m.
    ``layout="shifted"`` moves everything one column left (x = 0 .. 690 m), as some
    reproductions do.
    """
    if layout == "released":
        shift = 0
    elif layout == "shifted":
        shift = -1
    else:
        raise ValueError(f"unknown geometry layout {layout!r}; use 'released' or 'shifted'")
    base = dict(
        src_x=tuple(c + shift for c in OPENFWI_SOURCE_COLUMNS),
        rec_x=tuple(c + shift for c in range(1, 71)),
    )
    base.update(overrides)
    return Geometry(**base)
