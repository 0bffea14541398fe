"""A PyTorch sidecar spoken to in JSON lines on stdin / stdout, so its timings alternate with JAX's.

PyTorch runs in the interpreter `fwi_jax.torchenv` finds (or the one passed as `python`); the
sidecar scripts import the PyTorch InversionNet from fwi_jax/torch_side, which torchenv puts on
their path.
"""

from __future__ import annotations

import json
from pathlib import Path

from fwi_jax import torchenv

HERE = Path(__file__).resolve().parent


class TorchSidecar:
    def __init__(self, script: str, python: str | None = None):
        self.proc = torchenv.start_script(HERE / script, python=python)

    def ask(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the PyTorch sidecar died (see its stderr above)")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
