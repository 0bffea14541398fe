"""InversionNet in PyTorch, written from the layer table of the OpenFWI paper and code
(github.com/lanl/OpenFWI; NCHW, Conv/ConvTranspose -> BatchNorm2d -> LeakyReLU(0.2), Tanh head),
independently of fwi_jax and of the reference code: the PyTorch side of the parity tests and the benchmarks.

    python torch_inversionnet.py parity OUT --dims 32 64 128 256 512 --train-dims 8 16 32 64 128
    python torch_inversionnet.py critic OUT --batch 4
    python torch_inversionnet.py equal A.pth B.pth
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, kernel=3, stride=1, padding=1, act="leaky"):
        super().__init__()
        tail = nn.LeakyReLU(0.2, inplace=True) if act == "leaky" else nn.Tanh()
        self.layers = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), tail)

    def forward(self, x):
        return self.layers(x)


class DeconvBlock(nn.Module):
    def __init__(self, cin, cout, kernel=4, stride=2, padding=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel, stride, padding),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.2, inplace=True),
        )

    def forward(self, x):
        return self.layers(x)


class InversionNet(nn.Module):
    def __init__(self, d1=32, d2=64, d3=128, d4=256, d5=512):
        super().__init__()
        t = dict(kernel=(3, 1), padding=(1, 0))
        self.convblock1 = ConvBlock(5, d1, (7, 1), (2, 1), (3, 0))
        self.convblock2_1 = ConvBlock(d1, d2, stride=(2, 1), **t)
        self.convblock2_2 = ConvBlock(d2, d2, **t)
        self.convblock3_1 = ConvBlock(d2, d2, stride=(2, 1), **t)
        self.convblock3_2 = ConvBlock(d2, d2, **t)
        self.convblock4_1 = ConvBlock(d2, d3, stride=(2, 1), **t)
        self.convblock4_2 = ConvBlock(d3, d3, **t)
        self.convblock5_1 = ConvBlock(d3, d3, stride=2)
        self.convblock5_2 = ConvBlock(d3, d3)
        self.convblock6_1 = ConvBlock(d3, d4, stride=2)
        self.convblock6_2 = ConvBlock(d4, d4)
        self.convblock7_1 = ConvBlock(d4, d4, stride=2)
        self.convblock7_2 = ConvBlock(d4, d4)
        self.convblock8 = ConvBlock(d4, d5, (8, 9), padding=0)
        self.deconv1_1 = DeconvBlock(d5, d5, 5, 2, 0)
        self.deconv1_2 = ConvBlock(d5, d5)
        self.deconv2_1 = DeconvBlock(d5, d4)
        self.deconv2_2 = ConvBlock(d4, d4)
        self.deconv3_1 = DeconvBlock(d4, d3)
        self.deconv3_2 = ConvBlock(d3, d3)
        self.deconv4_1 = DeconvBlock(d3, d2)
        self.deconv4_2 = ConvBlock(d2, d2)
        self.deconv5_1 = DeconvBlock(d2, d1)
        self.deconv5_2 = ConvBlock(d1, d1)
        self.deconv6 = ConvBlock(d1, 1, act="tanh")

    def forward(self, x):
        for name in [n for n, _ in self.named_children()]:
            x = getattr(self, name)(x)
            if name == "deconv5_2":
                x = nn.functional.pad(x, [-5, -5, -5, -5])  # 80 x 80 -> 70 x 70
        return x


class Critic(nn.Module):
    """VelocityGAN's critic from the layer table: (B, 1, 70, 70) -> (B, 1)."""

    def __init__(self, d1=32, d2=64, d3=128, d4=256):
        super().__init__()
        cin = 1
        for i, width in enumerate((d1, d2, d3, d4), start=1):
            setattr(self, f"convblock{i}_1", ConvBlock(cin, width, stride=2))
            setattr(self, f"convblock{i}_2", ConvBlock(width, width))
            cin = width
        self.convblock5 = ConvBlock(d4, 1, kernel=5, padding=0)

    def forward(self, x):
        for block in self.children():
            x = block(x)
        return x.view(x.shape[0], -1)


def critic(out: Path, batch: int, seed: int) -> None:
    """A critic with non-trivial BatchNorm statistics, its weights and its train / eval scores."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Critic()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
    torch.save(model.state_dict(), out / "critic.pth")
    x = torch.rand(batch, 1, 70, 70) * 2 - 1
    model.eval()
    with torch.no_grad():
        eval_out = model(x).numpy()
    model.train()
    train_out = model(x).detach().numpy()
    np.savez(out / "critic_io.npz", x=x.numpy(), eval_out=eval_out, train_out=train_out)


def loss_fn(pred, target):
    return nn.functional.l1_loss(pred, target) + nn.functional.mse_loss(pred, target)


def parity(out: Path, dims, train_dims, batch: int, seed: int, lr: float) -> None:
    """Eval outputs of a full-width model, and train-mode outputs, gradients and one AdamW step of a
    narrower one; all inputs drawn here and saved."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 5, 1000, 70)).astype(np.float32)
    y = rng.uniform(-1, 1, size=(batch, 1, 70, 70)).astype(np.float32)
    torch.manual_seed(seed)
    full = InversionNet(*dims)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode exercises them
        for m in full.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    full.eval()
    torch.save(full.state_dict(), out / "full.pth")
    torch.save({"model": full.state_dict(), "epoch": 3}, out / "full_wrapped.pth")
    with torch.no_grad():
        eval_out = full(torch.from_numpy(x)).numpy()

    torch.manual_seed(seed + 1)
    small = InversionNet(*train_dims)
    torch.save(small.state_dict(), out / "small.pth")
    small.train()
    opt = torch.optim.AdamW(small.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)
    pred = small(torch.from_numpy(x))
    loss = loss_fn(pred, torch.from_numpy(y))
    opt.zero_grad()
    loss.backward()
    grads = {f"{k}": p.grad.detach().numpy().copy() for k, p in small.named_parameters()}
    opt.step()
    torch.save(small.state_dict(), out / "small_after.pth")
    np.savez(out / "grads.npz", **grads)
    np.savez(out / "io.npz", x=x, y=y, eval_out=eval_out, train_out=pred.detach().numpy(), loss=loss.detach().numpy())


def equal(a: Path, b: Path) -> dict:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    sa = sa.get("model", sa)
    diff = sorted(set(sa) ^ set(sb))
    unequal = [
        k for k in sorted(set(sa) & set(sb)) if not k.endswith("num_batches_tracked") and not torch.equal(sa[k], sb[k])
    ]
    model = InversionNet()
    model.load_state_dict(sb)  # the reference's strict load
    return {"missing_or_extra": diff, "unequal": unequal}


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    par = sub.add_parser("parity")
    par.add_argument("out", type=Path)
    par.add_argument("--dims", type=int, nargs=5, default=[32, 64, 128, 256, 512])
    par.add_argument("--train-dims", type=int, nargs=5, default=[8, 16, 32, 64, 128])
    par.add_argument("--batch", type=int, default=2)
    par.add_argument("--seed", type=int, default=0)
    par.add_argument("--lr", type=float, default=1e-3)
    cr = sub.add_parser("critic")
    cr.add_argument("out", type=Path)
    cr.add_argument("--batch", type=int, default=4)
    cr.add_argument("--seed", type=int, default=0)
    eq = sub.add_parser("equal")
    eq.add_argument("a", type=Path)
    eq.add_argument("b", type=Path)
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if a.cmd == "parity":
        parity(a.out, a.dims, a.train_dims, a.batch, a.seed, a.lr)
    elif a.cmd == "critic":
        critic(a.out, a.batch, a.seed)
    else:
        print(json.dumps(equal(a.a, a.b)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
