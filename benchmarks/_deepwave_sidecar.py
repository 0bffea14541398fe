"""deepwave side of generation.py and gradient.py, a sidecar (see _sidecar.py); requests:

        {"cmd": "setup", "models": "MODELS.npy"}       load (B, 70, 70) maps, warm up
        {"cmd": "time", "batch": N}                    seconds for the first N models
        {"cmd": "data", "batch": N, "out": "OUT.npy"}  their receiver data, deepwave's raw convention
        {"cmd": "grad_setup", "start": "START.npy"}    gradient mode (gradient.py): misfit of START's data
                                                       against the loaded models' data
        {"cmd": "grad_time", "batch": N}               seconds for N gradients (forward + backward)
        {"cmd": "grad", "batch": N, "out": "OUT.npy"}  the gradients, (N, 70, 70)
        {"cmd": "quit"}

Runs in an interpreter with torch + deepwave (on these machines a Python 3.11 venv).
"""

import resource

import deepwave
import numpy as np
import torch
from _sidecar import serve, timed


def ricker(freq, dt, nt):
    n = 2 * int(np.floor(2.2 / (freq * dt) / 2)) + 1
    t = (np.arange(n) - (n - 1) // 2) * dt
    a = (np.pi * freq * t) ** 2
    return np.pad((1 - 2 * a) * np.exp(-a), (0, nt - n)).astype(np.float32)


def survey(nt=1000, dt=1e-3, freq=15.0):
    src_cols = [1, 18, 35, 53, 70]
    src = torch.zeros(len(src_cols), 1, 2, dtype=torch.long)
    src[:, 0, 0] = 1
    src[:, 0, 1] = torch.tensor(src_cols)
    rec = torch.zeros(len(src_cols), 70, 2, dtype=torch.long)
    rec[:, :, 0] = 1
    rec[:, :, 1] = torch.arange(1, 71)
    amp = torch.from_numpy(ricker(freq, dt, nt)).reshape(1, 1, -1).repeat(len(src_cols), 1, 1)
    return {"source_amplitudes": amp, "source_locations": src, "receiver_locations": rec}


def extend(models):
    """Receivers reach x = 700 m (column 70): extend the model one edge column, as exact mode does."""
    return np.ascontiguousarray(np.concatenate([models, models[:, :, -1:]], axis=2))


def simulate(v, dx=10.0, dt=1e-3, freq=15.0):
    """(shots, receivers, nt) receiver data of one (70, 71) torch model."""
    return deepwave.scalar(v, dx, dt, **survey(), accuracy=4, pml_width=20, pml_freq=freq, courant_number=0.7)[-1]


def run(models):
    with torch.no_grad():
        out = [simulate(torch.from_numpy(v)).numpy() for v in extend(models)]
    return np.stack(out).transpose(0, 1, 3, 2)  # (B, shots, nt, receivers)


def gradients(starts, targets):
    """d/dv of sum((data(v) - target)^2) per model, on the 70 model columns."""
    out = []
    for v0, target in zip(extend(starts), targets, strict=True):
        v = torch.from_numpy(v0).requires_grad_()
        loss = ((simulate(v) - target) ** 2).sum()
        loss.backward()
        out.append(v.grad.numpy()[:, :70])
    return np.stack(out)


state: dict = {}  # models; for the gradient mode also starts and targets


def setup(msg: dict) -> dict:
    state["models"] = np.load(msg["models"]).astype(np.float32)
    run(state["models"][:1])  # warm-up
    return {"torch_threads": torch.get_num_threads(), "deepwave": getattr(deepwave, "__version__", "?")}


def grad_setup(msg: dict) -> dict:
    state["starts"] = np.load(msg["start"]).astype(np.float32)
    with torch.no_grad():
        state["targets"] = [simulate(torch.from_numpy(v)) for v in extend(state["models"])]
    grad_of(1)  # warm-up
    return {"ok": True}


def grad_of(n: int) -> np.ndarray:
    return gradients(state["starts"][:n], state["targets"][:n])


def save(path: str, array: np.ndarray) -> dict:
    np.save(path, array)
    return {"ok": True}


if __name__ == "__main__":
    serve(
        {
            "setup": setup,
            "time": lambda msg: {"seconds": timed(lambda: run(state["models"][: msg["batch"]]))},
            "data": lambda msg: save(msg["out"], run(state["models"][: msg["batch"]])),
            "grad_setup": grad_setup,
            "grad_time": lambda msg: {
                "seconds": timed(lambda: grad_of(msg["batch"])),
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            },
            "grad": lambda msg: save(msg["out"], grad_of(msg["batch"])),
        }
    )
