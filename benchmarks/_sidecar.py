"""A PyTorch sidecar spoken to in JSON lines on stdin / stdout, so its timings alternate with JAX's.

PyTorch runs in the interpreter passed as `python`, else in this one when torch is importable,
else in FWI_JAX_TORCH_PYTHON (e.g. a Python 3.11 venv with torch==2.13.0).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


class TorchSidecar:
    def __init__(self, script: str, python: str | None = None):
        if python is None:
            python = sys.executable if importlib.util.find_spec("torch") else os.environ.get("FWI_JAX_TORCH_PYTHON")
        exe = python
        if not exe:
            raise RuntimeError("PyTorch not importable and FWI_JAX_TORCH_PYTHON not set (or pass --no-torch)")
        self.proc = subprocess.Popen(
            [exe, str(HERE / script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

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
