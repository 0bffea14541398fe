"""The JAX side's part of the deepwave comparisons (generation.py, gradient.py): their models, and
deepwave's sidecar (_deepwave_sidecar.py) with a folder for the arrays the two sides exchange.

deepwave needs PyTorch: it runs in the interpreter named by --torch-python, else the one
fwi_jax.torchenv finds ($FWI_JAX_TORCH_PYTHON), e.g. a Python 3.11 venv with torch==2.13.0 and deepwave.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from _harness import Col, ratio_col
from _sidecar import Sidecar

from fwi_jax import torchenv
from fwi_jax.data import velocity


def benchmark_models(n: int) -> np.ndarray:
    """Half slow-top FlatVel-A, half CurveFault-B maps (fast tops are the sponge's worst case)."""
    a = velocity.generate("flatvel-a", n - n // 2, seed=11)
    b = velocity.generate("curvefault-b", n // 2, seed=12)
    return np.concatenate([a, b])


def columns(rate: str, rate_key: str, ratio: str) -> list[Col | str]:
    """The leading columns of both tables: propagator, models/call, s/call, the rate, its ratio to deepwave."""
    return [
        "propagator",
        Col("models/call", "models_per_call"),
        Col("s/call", "seconds", "{:.2f}"),
        Col(rate, rate_key, "{:.2f}"),
        ratio_col(ratio, "ratio_vs_deepwave"),
    ]


class Deepwave(Sidecar):
    """The deepwave sidecar, set up on ``models``; ``info`` is its setup reply (threads, version)."""

    def __init__(self, models: np.ndarray, python: str, folder: Path):
        super().__init__("_deepwave_sidecar.py", python=python)
        self.folder = folder
        self.info = self.ask("setup", models=self.put("models", models))

    def put(self, name: str, array: np.ndarray) -> str:
        """Save ``array`` where the sidecar reads it; returns the path to send."""
        path = self.folder / f"{name}.npy"
        np.save(path, array)
        return str(path)

    def get(self, cmd: str, **msg) -> np.ndarray:
        """The array a request (``data``, ``grad``) makes the sidecar save."""
        path = self.folder / f"{cmd}_out.npy"
        self.ask(cmd, out=str(path), **msg)
        return np.load(path)


@contextlib.contextmanager
def deepwave(models: np.ndarray, python: str = "", enabled: bool = True) -> Iterator[Deepwave | None]:
    """The sidecar for this run, closed after it; None when disabled or no PyTorch interpreter is known."""
    exe = torchenv.torch_python(python or None) if enabled else None
    if exe is None:
        if enabled:
            print("deepwave not run: pass --torch-python or set FWI_JAX_TORCH_PYTHON (see README)", file=sys.stderr)
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp, Deepwave(models, exe, Path(tmp)) as side:
        yield side
