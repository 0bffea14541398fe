"""deepwave side of generation.py: a line protocol on stdin/stdout, so its timings alternate with JAX's.

    python _deepwave_sidecar.py      then send JSON lines:
        {"cmd": "setup", "models": "MODELS.npy"}       load (B, 70, 70) maps, warm up
        {"cmd": "time", "batch": N}                    seconds for the first N models
        {"cmd": "data", "batch": N, "out": "OUT.npy"}  their receiver data, deepwave's raw convention
        {"cmd": "quit"}

Runs in an interpreter with torch + deepwave (on these machines a Python 3.11 venv).
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
    models = None
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "setup":
            models = np.load(msg["models"]).astype(np.float32)
            run(models[:1])  # warm-up
            reply = {"torch_threads": torch.get_num_threads(), "deepwave": getattr(deepwave, "__version__", "?")}
        elif msg["cmd"] == "time":
            t = time.perf_counter()
            run(models[: msg["batch"]])
            reply = {"seconds": time.perf_counter() - t}
        elif msg["cmd"] == "data":
            np.save(msg["out"], run(models[: msg["batch"]]))
            reply = {"ok": True}
        elif msg["cmd"] == "quit":
            break
        else:
            reply = {"error": f"unknown command {msg['cmd']!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
