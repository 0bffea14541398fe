""".pth files as numpy: with torch in this process, else through fwi_jax/torch_side/pth_convert.py
run by the interpreter that `fwi_jax.torchenv` finds."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from fwi_jax import torchenv
from fwi_jax.fileio import atomic_path
from fwi_jax.torch_port.keymap import set_path
from fwi_jax.torch_side.pth_convert import SEP, read_pth, write_pth


def _convert(mode: str, src: Path, dst: Path) -> None:
    proc = torchenv.run_script("pth_convert.py", mode, src, dst)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise ValueError(_unreadable(src, last) if mode == "load" else f"could not write {dst} with PyTorch: {last}")


def _unreadable(path: Path, reason: str) -> str:
    reason = re.sub(r"\x1b\[[0-9;]*m", "", reason)[:300]  # torch's messages carry terminal colours
    return (
        f"{path} is not a readable PyTorch weights file ({reason}); pass a state_dict saved with torch.save "
        "(pickled code is refused: weights_only)"
    )


def load_pth(path: str | os.PathLike) -> dict:
    """Every tensor of a .pth file as numpy, in the file's nesting of dicts ({"model": {...}} etc.)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_file() or path.stat().st_size == 0:
        raise ValueError(_unreadable(path, "a directory" if path.is_dir() else "empty"))
    if torchenv.torch_in_process():
        try:
            flat = read_pth(str(path))
        except Exception as e:  # torch raises many kinds for foreign or damaged files
            first = (str(e).splitlines() or [""])[0]
            raise ValueError(_unreadable(path, f"{type(e).__name__}: {first}")) from None
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
            write_pth(state_dict, str(tmp))
        else:
            with tempfile.TemporaryDirectory() as d:
                npz = Path(d) / "sd.npz"
                np.savez(npz, **state_dict)
                _convert("save", npz, tmp)
