"""PyTorch side of step_time.py: a line protocol on stdin/stdout, so timings alternate with JAX's.

    python _torch_step.py        then send JSON lines: {"cmd": "setup", "batch": 16}, {"cmd": "train", "n": 3},
                                 {"cmd": "infer", "n": 3}, {"cmd": "peak"}, {"cmd": "quit"}
The InversionNet is the one the parity tests check (fwi_jax/torch_side/torch_inversionnet.py,
built from the layer table; fwi_jax.torchenv puts that folder on this script's path).
"""

import json
import sys
import time

import torch
from torch_inversionnet import InversionNet, loss_fn


def main() -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    state = {}

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        if cmd == "setup":
            torch.manual_seed(0)
            b = msg["batch"]
            model = InversionNet().to(device)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
            x = torch.randn(b, 5, 1000, 70, device=device)
            y = torch.rand(b, 1, 70, 70, device=device) * 2 - 1
            state.update(model=model, opt=opt, x=x, y=y)
            t = time.perf_counter()
            step(state)
            sync()
            reply = {"first_step_s": time.perf_counter() - t}
        elif cmd in ("train", "infer"):
            times = []
            for _ in range(msg["n"]):
                t = time.perf_counter()
                if cmd == "train":
                    step(state)
                else:
                    state["model"].eval()
                    with torch.no_grad():
                        state["model"](state["x"])
                    state["model"].train()
                sync()
                times.append(time.perf_counter() - t)
            reply = {"times": times}
        elif cmd == "peak":
            n = 2048
            a = torch.randn(n, n, device=device)
            a @ a
            t = time.perf_counter()
            for _ in range(10):
                a @ a
            sync()
            reply = {"gflops": 10 * 2 * n**3 / (time.perf_counter() - t) / 1e9}
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd}"}
        reply.update(torch=torch.__version__, threads=torch.get_num_threads(), device=device)
        print(json.dumps(reply), flush=True)


def step(state):
    model, opt = state["model"], state["opt"]
    model.train()
    loss = loss_fn(model(state["x"]), state["y"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


if __name__ == "__main__":
    main()
