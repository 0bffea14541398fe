"""PyTorch side of layer_times.py, a sidecar (see _sidecar.py): requests {"cmd": "setup", "batch": 16},
{"cmd": "time", "n": 3}, {"cmd": "quit"}.

Blocks are those of the InversionNet the parity tests check (fwi_jax/torch_side/torch_inversionnet.py,
on this script's path via fwi_jax.torchenv); each is timed in train mode as forward + backward
(gradients of its parameters and of its input), after one untimed call.
"""

import functools

import torch
from _sidecar import serve, timings
from torch_inversionnet import InversionNet

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SYNC = torch.cuda.synchronize if DEVICE == "cuda" else None
blocks: list = []  # (name, module, input, output cotangent)


def setup(msg: dict) -> dict:
    torch.manual_seed(0)
    model = InversionNet().to(DEVICE).train()
    shapes = {}

    def keep_shape(module, args, name):
        shapes[name] = tuple(args[0].shape)  # returns None: the input passes unchanged

    hooks = [
        child.register_forward_pre_hook(functools.partial(keep_shape, name=name))
        for name, child in model.named_children()
    ]
    with torch.no_grad():
        model(torch.zeros(msg["batch"], 5, 1000, 70, device=DEVICE))
    for h in hooks:
        h.remove()
    blocks.clear()
    for name, child in model.named_children():
        x = torch.randn(shapes[name], device=DEVICE, requires_grad=True)
        with torch.no_grad():
            ct = torch.randn_like(child(x))
        blocks.append((name, child, x, ct))
    return {"blocks": [[name, list(x.shape)] for name, _, x, _ in blocks]}


def forward_backward(child, x, ct) -> None:
    child.zero_grad(set_to_none=True)
    x.grad = None
    child(x).backward(ct)


def time_blocks(msg: dict) -> dict:
    return {
        "times": {
            name: timings(functools.partial(forward_backward, child, x, ct), msg["n"], SYNC, warmup=1)
            for name, child, x, ct in blocks
        }
    }


if __name__ == "__main__":
    serve({"setup": setup, "time": time_blocks})
