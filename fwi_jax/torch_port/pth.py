""".pth files as numpy: with torch in this process, else through fwi_jax/torch_side/pth_convert.py
run by the interpreter that `fwi_jax.torchenv` finds."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from fwi_jax import torchenv
from fwi_jax.fileio import atomic_path
from fwi_jax.torch_port.keymap import set_path

SEP = "\x1f"  # fwi_jax.torch_side.pth_convert.SEP (that module imports torch)


def _convert(mode: str, src: Path, dst: Path) -> None:
    proc = torchenv.run_script("pth_convert.py", mode, src, dst)
    if proc.returncode:
        raise ValueError(f"could not {mode} {src} with PyTorch: {proc.stderr.strip().splitlines()[-1:]}")


def load_pth(path: str | os.PathLike) -> dict:
    """Every tensor of a .pth file as numpy, in the file's nesting of dicts ({"model": {...}} etc.)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if torchenv.torch_in_process():
        from fwi_jax.torch_side.pth_convert import read_pth

        flat = read_pth(str(path))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "sd.npz"
            _convert("load", path, npz)
            with np.load(npz) as z:
                flat = {k: z[k] for k in z.files}
    nested: dict = {}
    for k, v in flat.items():
        set_path(nested, tuple(k.split(SEP)), v)
    return nested


def save_pth(state_dict: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """A flat state_dict as a .pth file (written under a temporary name, then renamed)."""
    with atomic_path(path) as tmp:
        if torchenv.torch_in_process():
            from fwi_jax.torch_side.pth_convert import write_pth

            write_pth(state_dict, str(tmp))
        else:
            with tempfile.TemporaryDirectory() as d:
                npz = Path(d) / "sd.npz"
                np.savez(npz, **state_dict)
                _convert("save", npz, tmp)
