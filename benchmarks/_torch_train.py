"""PyTorch side of training_parity.py: the reference recipe's training loop, written from the
OpenFWI reference's train.py (github.com/lanl/OpenFWI: AdamW, loss L1 + L2 (MSE), BatchNorm in
train mode, per-step learning rate), on arrays and a batch order the JAX side wrote. Run under
the PyTorch interpreter:

    python _torch_train.py SPEC.json OUT.json [--threads N]

SPEC.json names the initial weights (.pth), the normalized train / validation arrays (.npy, NCHW),
the per-step sample indices and the learning rate of each step. ``--threads 1`` runs the same
training on one thread: oneDNN then splits its convolution reductions differently, so the run
differs from the default only in float32 summation order (the control for how far two PyTorch
runs drift apart by rounding alone).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from torch_inversionnet import InversionNet


def loss_of(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.l1_loss(pred, target) + nn.functional.mse_loss(pred, target)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("spec")
    p.add_argument("out")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    spec = json.loads(open(a.spec).read())
    torch.manual_seed(0)
    model = InversionNet(*spec["dims"])
    model.load_state_dict(torch.load(spec["init"], weights_only=True))
    o = spec["optim"]
    opt = torch.optim.AdamW(model.parameters(), lr=o["lr"][0], betas=(o["b1"], o["b2"]), eps=o["eps"],
                            weight_decay=o["weight_decay"])  # fmt: skip
    xs, ys = np.load(spec["train_seismic"], mmap_mode="r"), np.load(spec["train_velocity"], mmap_mode="r")
    losses, t = [], time.perf_counter()
    model.train()
    for step, idx in enumerate(spec["indices"]):
        for group in opt.param_groups:
            group["lr"] = o["lr"][step]
        x, y = torch.from_numpy(np.ascontiguousarray(xs[idx])), torch.from_numpy(np.ascontiguousarray(ys[idx]))
        loss = loss_of(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if (step + 1) % 50 == 0:
            print(f"torch step {step + 1}: loss {losses[-1]:.4f}", flush=True)
    seconds = time.perf_counter() - t
    model.eval()
    with torch.no_grad():
        val = np.load(spec["val_seismic"])
        pred = np.concatenate([model(torch.from_numpy(val[i : i + 16])).numpy() for i in range(0, len(val), 16)])
    np.save(spec["prefix"] + f"_threads{a.threads}_val_pred.npy", pred)
    out = {"losses": losses, "seconds": seconds, "torch": torch.__version__, "threads": torch.get_num_threads()}
    open(a.out, "w").write(json.dumps(out))


if __name__ == "__main__":
    main()
