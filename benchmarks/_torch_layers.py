"""PyTorch side of layer_times.py: a line protocol on stdin/stdout, so block timings alternate with JAX's.

    python _torch_layers.py      then send JSON lines: {"cmd": "setup", "batch": 16}, {"cmd": "time", "n": 3},
                                 {"cmd": "quit"}
Blocks are those of the InversionNet the parity tests check (fwi_jax/torch_side/torch_inversionnet.py,
on this script's path via fwi_jax.torchenv); each is timed
in train mode as forward + backward (gradients of its parameters and of its input).
"""

import functools
import json
import sys
import time

import torch
from torch_inversionnet import InversionNet


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    blocks: list = []

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "setup":
            torch.manual_seed(0)
            model = InversionNet().to(device).train()
            shapes = {}

            def keep_shape(module, args, name, shapes=shapes):
                shapes[name] = tuple(args[0].shape)  # returns None: the input passes unchanged

            hooks = [
                child.register_forward_pre_hook(functools.partial(keep_shape, name=name))
                for name, child in model.named_children()
            ]
            with torch.no_grad():
                model(torch.zeros(msg["batch"], 5, 1000, 70, device=device))
            for h in hooks:
                h.remove()
            blocks = []
            for name, child in model.named_children():
                x = torch.randn(shapes[name], device=device, requires_grad=True)
                with torch.no_grad():
                    ct = torch.randn_like(child(x))
                blocks.append((name, child, x, ct))
            reply = {"blocks": [[name, list(x.shape)] for name, _, x, _ in blocks]}
        elif msg["cmd"] == "time":
            reply = {"times": {}}
            for name, child, x, ct in blocks:
                times = []
                for _ in range(msg["n"] + 1):  # the first call warms up
                    child.zero_grad(set_to_none=True)
                    x.grad = None
                    t = time.perf_counter()
                    child(x).backward(ct)
                    sync()
                    times.append(time.perf_counter() - t)
                reply["times"][name] = times[1:]
        elif msg["cmd"] == "quit":
            return
        else:
            reply = {"error": f"unknown command {msg['cmd']!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
