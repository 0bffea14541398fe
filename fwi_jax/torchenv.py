"""Where PyTorch runs: this interpreter when torch imports here, else the one named by
$FWI_JAX_TORCH_PYTHON (e.g. a Python 3.11 venv with `pip install torch==2.13.0`).

The one place that finds it, for the weight port, the parity tests and the benchmarks.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ENV = "FWI_JAX_TORCH_PYTHON"
TORCH_SIDE = Path(__file__).resolve().parent / "torch_side"


def torch_in_process() -> bool:
    return importlib.util.find_spec("torch") is not None


def torch_python(explicit: str | None = None) -> str | None:
    """``explicit``, else this interpreter when it has torch, else $FWI_JAX_TORCH_PYTHON, else None."""
    if explicit:
        return explicit
    if torch_in_process():
        return sys.executable
    return os.environ.get(ENV) or None


def require_torch_python(explicit: str | None = None) -> str:
    exe = torch_python(explicit)
    if exe is None:
        raise RuntimeError(
            f"this needs PyTorch: install torch here, or set {ENV}=/path/to/python "
            "(an interpreter with torch, e.g. a Python 3.11 venv with torch==2.13.0)"
        )
    return exe


def script_env() -> dict[str, str]:
    """The environment for a torch-side script: fwi_jax/torch_side on its path (nothing else of ours)."""
    path = os.pathsep.join(p for p in (str(TORCH_SIDE), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path)


def run_script(script: str | Path, *args, python: str | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` (a path, or a file name inside fwi_jax/torch_side) under the torch interpreter."""
    path = Path(script) if Path(script).is_absolute() else TORCH_SIDE / script
    cmd = [require_torch_python(python), str(path), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=script_env())


def start_script(script: str | Path, python: str | None = None) -> subprocess.Popen:
    """Start ``script`` under the torch interpreter with line-buffered text pipes on stdin / stdout."""
    cmd = [require_torch_python(python), str(script)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=script_env())
