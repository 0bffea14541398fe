"""Run deepwave's scalar propagator on OpenFWI geometry (called by generation.py in a torch env).

    python _deepwave_sidecar.py MODELS.npy OUT_PREFIX BATCH [BATCH ...]

Writes OUT_PREFIX.npy (receiver data of all models, deepwave's raw convention) and
OUT_PREFIX.json (seconds per call for each batch size).
"""

import json
import sys
import time

import deepwave
import numpy as np
import torch


def ricker(freq, dt, nt):
    n = 2 * int(np.floor(2.2 / (freq * dt) / 2)) + 1
    t = (np.arange(n) - (n - 1) // 2) * dt
    a = (np.pi * freq * t) ** 2
    return np.pad((1 - 2 * a) * np.exp(-a), (0, nt - n)).astype(np.float32)


def run(models, nt=1000, dt=1e-3, dx=10.0, freq=15.0):
    b = models.shape[0]
    # Receivers reach x = 700 m (column 70): extend the model one edge column, as exact mode does.
    v = np.concatenate([models, models[:, :, -1:]], axis=2)
    src_cols = [1, 18, 35, 53, 70]
    src = torch.zeros(len(src_cols), 1, 2, dtype=torch.long)
    src[:, 0, 0] = 1
    src[:, 0, 1] = torch.tensor(src_cols)
    rec = torch.zeros(len(src_cols), 70, 2, dtype=torch.long)
    rec[:, :, 0] = 1
    rec[:, :, 1] = torch.arange(1, 71)
    amp = torch.from_numpy(ricker(freq, dt, nt)).reshape(1, 1, -1).repeat(len(src_cols), 1, 1)
    out = []
    for i in range(b):
        r = deepwave.scalar(
            torch.from_numpy(np.ascontiguousarray(v[i])),
            dx,
            dt,
            source_amplitudes=amp,
            source_locations=src,
            receiver_locations=rec,
            accuracy=4,
            pml_width=20,
            pml_freq=freq,
            courant_number=0.7,
        )[-1]
        out.append(r.numpy())  # (shots, receivers, nt)
    return np.stack(out).transpose(0, 1, 3, 2)  # (B, shots, nt, receivers)


def main():
    models = np.load(sys.argv[1]).astype(np.float32)
    prefix = sys.argv[2]
    timings = {}
    data = run(models[:1])  # warm-up
    for bs in map(int, sys.argv[3:]):
        t = time.perf_counter()
        data_bs = run(models[:bs])
        timings[bs] = time.perf_counter() - t
        if bs == len(models):
            data = data_bs
    if data.shape[0] != len(models):
        data = run(models)
    np.save(prefix + ".npy", data)
    with open(prefix + ".json", "w") as f:
        json.dump(
            {
                "seconds": timings,
                "torch_threads": torch.get_num_threads(),
                "deepwave": deepwave.__version__ if hasattr(deepwave, "__version__") else "?",
            },
            f,
        )


if __name__ == "__main__":
    main()
