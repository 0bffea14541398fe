"""Devito side of gradient.py, a sidecar (see _sidecar.py): the acoustic FWI gradient of Devito's own
examples (`examples.seismic.acoustic.AcousticWaveSolver`: a forward with the saved wavefield, then its
`jacobian_adjoint` operator), on the same problem as fwi_jax's row. Requests:

        {"cmd": "setup", "models": "MODELS.npy", "start": "START.npy"}   true maps and the start, (B, 70, 70)
        {"cmd": "grad_time", "batch": N}     seconds for N gradients (5 shots each: forward + adjoint)
        {"cmd": "quit"}

Grid: 70 x 70 cells of 10 m, 4th order in space, a 20-cell absorbing layer (Devito's damping
mask), 1000 steps of 1 ms, a 15 Hz Ricker, 5 sources and 70 receivers at 10 m depth as OpenFWI.
Runs in an interpreter with `pip install devito devito-examples` (an anchor, not a dependency),
OpenMP over all cores.
"""

import os

os.environ.setdefault("DEVITO_LANGUAGE", "openmp")
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
os.environ.setdefault("DEVITO_LOGGING", "ERROR")

import numpy as np  # noqa: E402
from _sidecar import serve, timed  # noqa: E402
from devito import __version__ as devito_version  # noqa: E402
from examples.seismic import AcquisitionGeometry, Model  # noqa: E402
from examples.seismic.acoustic import AcousticWaveSolver  # noqa: E402

SOURCES_M = (10.0, 180.0, 350.0, 530.0, 700.0)
state: dict = {}


def solvers() -> list[AcousticWaveSolver]:
    """One solver per shot on one model (Devito: x first, km/s, ms); its operators compile once."""
    model = Model(origin=(0.0, 0.0), spacing=(10.0, 10.0), shape=(70, 70), space_order=4,
                  vp=np.full((70, 70), 2.0, np.float32), nbl=20, bcs="damp", dt=1.0)  # fmt: skip
    rec = np.stack([np.arange(1, 71) * 10.0, np.full(70, 10.0)], axis=1)
    out = []
    for x in SOURCES_M:
        geometry = AcquisitionGeometry(model, rec, np.array([[x, 10.0]]), t0=0.0, tn=999.0, f0=0.015,
                                       src_type="Ricker")  # fmt: skip
        out.append(AcousticWaveSolver(model, geometry, space_order=4))
    return out


def use(v: np.ndarray) -> None:
    state["solvers"][0].model.update("vp", np.ascontiguousarray(v.T / 1000.0))  # (70, 70) m/s map


def observed(v_true: np.ndarray) -> list[np.ndarray]:
    use(v_true)
    return [s.forward()[0].data.copy() for s in state["solvers"]]


def gradient(obs: list[np.ndarray], v0: np.ndarray) -> np.ndarray:
    """d/dm of the L2 misfit summed over the 5 shots (Devito's gradient is in squared slowness)."""
    use(v0)
    total = 0.0
    for solver, d in zip(state["solvers"], obs, strict=True):
        rec, u, _ = solver.forward(save=True)
        rec.data[:] -= d
        grad, _ = solver.jacobian_adjoint(rec, u)
        total = total + grad.data[20:-20, 20:-20].T
    return np.asarray(total)


def setup(msg: dict) -> dict:
    state["solvers"] = solvers()
    state["obs"] = [observed(v) for v in np.load(msg["models"]).astype(np.float32)]
    state["starts"] = np.load(msg["start"]).astype(np.float32)
    gradient(state["obs"][0], state["starts"][0])  # compiles the operators
    return {"devito": devito_version, "threads": int(os.environ["OMP_NUM_THREADS"])}


def grad_time(msg: dict) -> dict:
    n = msg["batch"]
    pairs = list(zip(state["obs"][:n], state["starts"][:n], strict=True))
    return {"seconds": timed(lambda: [gradient(d, s) for d, s in pairs])}


if __name__ == "__main__":
    serve({"setup": setup, "grad_time": grad_time})
