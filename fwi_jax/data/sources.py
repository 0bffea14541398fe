"""Random-access sources of OpenFWI (seismic, velocity) pairs, memory-mapped per sample."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fwi_jax.data.datasets import DatasetSpec


def read_split(split_file: str | os.PathLike, root: str | os.PathLike | None = None) -> list[tuple[Path, Path]]:
    """Pairs of (seismic, velocity) paths from a split file: one tab-separated pair per line.

    Relative paths are resolved against ``root`` (default: the split file's folder). Absolute
    paths that do not exist (the reference's cluster paths) are looked up under ``root`` by their
    last two components (``data/data1.npy``) or their file name.
    """
    split_file = Path(split_file)
    if not split_file.is_file():
        raise FileNotFoundError(f"split file {split_file} does not exist")
    base = Path(root) if root is not None else split_file.parent
    pairs = []
    for lineno, line in enumerate(split_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 2:
            raise ValueError(f"{split_file}:{lineno}: expected 'SEISMIC<TAB>VELOCITY', got {line!r}")
        pairs.append(tuple(_resolve(p.strip(), base, split_file, lineno) for p in parts))
    if not pairs:
        raise ValueError(f"split file {split_file} lists no files")
    return pairs


def _resolve(path: str, base: Path, split_file: Path, lineno: int) -> Path:
    p = Path(path)
    candidates = [p] if p.is_absolute() else [base / p]
    if p.is_absolute():
        candidates += [base / Path(*p.parts[-2:]), base / p.name]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"{split_file}:{lineno}: {path} not found (looked at {', '.join(str(c) for c in candidates)}); "
        "fix the path or pass the data root that holds it"
    )


class OpenFWISource:
    """(seismic (S, T, R), velocity (1, H, W)) float32 pairs, one memory-mapped sample per read."""

    def __init__(self, pairs: list[tuple[Path, Path]], spec: DatasetSpec):
        self.spec = spec
        self._data, self._model, counts = [], [], []
        for seis_path, vel_path in pairs:
            seis = _open(seis_path, spec.seismic_shape)
            vel = _open(vel_path, spec.velocity_shape)
            if len(seis) != len(vel):
                raise ValueError(f"{seis_path} holds {len(seis)} samples but {vel_path} holds {len(vel)}")
            self._data.append(seis)
            self._model.append(vel)
            counts.append(len(seis))
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self.files = list(pairs)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range [0, {len(self)})")
        f = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return f, index - int(self._offsets[f])

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        f, i = self.locate(int(index))
        return np.array(self._data[f][i]), np.array(self._model[f][i])


def _open(path: Path, sample_shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable .npy file ({e}); re-download or regenerate it") from None
    if arr.ndim != 1 + len(sample_shape) or tuple(arr.shape[1:]) != tuple(sample_shape):
        raise ValueError(f"{path} has shape {arr.shape}, expected (N, {', '.join(map(str, sample_shape))})")
    if arr.dtype != np.float32:
        raise ValueError(f"{path} has dtype {arr.dtype}, expected float32")
    return arr
