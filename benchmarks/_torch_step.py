"""PyTorch side of step_time.py, a sidecar (see _sidecar.py): requests {"cmd": "setup", "batch": 16,
"dtype": "float32"}, {"cmd": "train", "n": 3}, {"cmd": "infer", "n": 3}, {"cmd": "peak"}, {"cmd": "quit"}.

dtype "bfloat16" runs the model under torch.autocast (bf16 convolutions, float32 parameters and
optimizer), the PyTorch counterpart of fwi_jax's model.compute_dtype=bfloat16.

The InversionNet is the one the parity tests check (fwi_jax/torch_side/torch_inversionnet.py,
built from the layer table; fwi_jax.torchenv puts that folder on this script's path).
"""

import contextlib
import time

import torch
from _sidecar import serve, timings
from torch_inversionnet import InversionNet, loss_fn

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SYNC = torch.cuda.synchronize if DEVICE == "cuda" else None
if DEVICE == "cuda":
    # As XLA on the same GPU: TF32 for float32 convolutions and matmuls, convolution algorithms autotuned.
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
state = {}


def _autocast():
    if state["dtype"] == "bfloat16":
        return torch.autocast(DEVICE, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def step() -> None:
    model, opt = state["model"], state["opt"]
    model.train()
    with _autocast():
        loss = loss_fn(model(state["x"]).float(), state["y"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def infer() -> None:
    state["model"].eval()
    with torch.no_grad(), _autocast():
        state["model"](state["x"])
    state["model"].train()


def setup(msg: dict) -> dict:
    torch.manual_seed(0)
    b = msg["batch"]
    model = InversionNet(*msg.get("dims", (32, 64, 128, 256, 512))).to(DEVICE)  # the reference's widths by default
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.randn(b, 5, 1000, 70, device=DEVICE)
    y = torch.rand(b, 1, 70, 70, device=DEVICE) * 2 - 1
    state.update(model=model, opt=opt, x=x, y=y, dtype=msg.get("dtype", "float32"))
    return {"first_step_s": timings(step, 1, SYNC)[0]}


def peak(msg: dict) -> dict:
    n = msg.get("n", 2048)
    a = torch.randn(n, n, device=DEVICE, dtype=getattr(torch, msg.get("dtype", "float32")))
    a @ a
    if SYNC:
        SYNC()
    t = time.perf_counter()
    for _ in range(10):
        a @ a
    if SYNC:
        SYNC()
    return {"gflops": 10 * 2 * n**3 / (time.perf_counter() - t) / 1e9}


if __name__ == "__main__":
    serve(
        {
            "setup": setup,
            "train": lambda msg: {"times": timings(step, msg["n"], SYNC)},
            "infer": lambda msg: {"times": timings(infer, msg["n"], SYNC)},
            "peak": peak,
        },
        stamp={
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": DEVICE,
            "device_name": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
        },
    )
