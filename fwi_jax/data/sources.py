"""Random-access sources of OpenFWI (seismic, velocity) pairs, read one sample at a time.

Two on-disk naming schemes exist: Vel / Style datasets use ``data/dataN.npy`` + ``model/modelN.npy``;
Fault datasets use ``seisX_Y_Z.npy`` + ``velX_Y_Z.npy`` (paired by their shared suffix). Both are
read the same way: the header checked once through a memory map, then one sample per ``pread`` from
an open descriptor, which maps nothing into the process (resident memory stays flat however many
files or epochs are read) and turns a file truncated mid-run into a short read, not a SIGBUS. Each
read also checks that the file is still the one opened (size, modification time, inode): a file
that changed under a run is one error naming it (`DataFileChanged`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from pathlib import Path

import numpy as np

from fwi_jax.data.datasets import DatasetSpec

_PAGE = mmap.PAGESIZE
# Linux maps pages around a faulting one (fault-around, large folios: measured ~300 KB here), so a
# read maps some of its neighbours' pages too; release that much margin on both sides (<= 2 MB folios).
_FAULT_AROUND = 2 << 20
# (seismic prefix, velocity prefix) of the two naming schemes; folders of those names are ignored
# when pairing, so data/data3.npy pairs with model/model3.npy and seis2_1_0.npy with vel2_1_0.npy.
SCHEMES = {"vel": ("data", "model"), "fault": ("seis", "vel")}
_NAME = re.compile(r"^(data|model|seis|vel)(\w*?)\.npy$")


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


def natural_key(path: Path) -> tuple:
    """data2 < data10; seis2_1_0 < seis10_1_0."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path)))


def scan_pairs(root: str | os.PathLike) -> tuple[list[tuple[Path, Path]], list[Path], str | None]:
    """(pairs, unpaired files, naming scheme) of every OpenFWI .npy file under ``root``.

    Files pair when their prefixes belong to one scheme and they share the suffix and the folder
    (folders named after a prefix, such as ``data/`` and ``model/``, count as their parent).
    """
    root = Path(root)
    found: dict[tuple[str, str, str], Path] = {}
    for path in root.rglob("*.npy"):
        m = _NAME.match(path.name)
        if not m or path.name.startswith("."):
            continue
        folder = path.parent.relative_to(root)
        if folder.name in {"data", "model", "seis", "vel"}:
            folder = folder.parent
        found[(m.group(1), str(folder), m.group(2))] = path
    pairs, used, schemes = [], set(), set()
    for scheme, (seis_prefix, vel_prefix) in SCHEMES.items():
        for (prefix, folder, suffix), seis in found.items():
            vel = found.get((vel_prefix, folder, suffix))
            if prefix == seis_prefix and vel is not None:
                pairs.append((seis, vel))
                used |= {seis, vel}
                schemes.add(scheme)
    unpaired = sorted((p for p in found.values() if p not in used), key=natural_key)
    scheme = "/".join(sorted(schemes)) if schemes else None
    return sorted(pairs, key=lambda p: natural_key(p[0])), unpaired, scheme


class DataFileChanged(OSError):
    """A data file was truncated, rewritten, replaced or removed while a run read it."""


class SampleFile:
    """An (N, *sample) float32 .npy read one sample per ``pread``; checked on every read to be the file
    that was opened."""

    def __init__(self, path: Path, sample_shape: tuple[int, ...]):
        arr = open_npy(path, sample_shape)  # every format problem, named
        self.path, self.shape, self.count, self.offset = path, tuple(sample_shape), len(arr), int(arr.offset)
        if not arr.flags.c_contiguous:
            raise ValueError(
                f"{path} is stored in Fortran order; rewrite it with np.save(path, np.ascontiguousarray(a))"
            )
        del arr
        self.sample_bytes = int(np.prod(sample_shape)) * 4
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        st = os.fstat(self._fd)
        self._identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def __len__(self) -> int:
        return self.count

    def _changed(self, what: str) -> DataFileChanged:
        size = self._identity[2]
        return DataFileChanged(f"{self.path} changed while the run read it ({what}; it had {size} bytes when opened)")

    def read(self, i: int) -> np.ndarray:
        st = os.fstat(self._fd)
        if st.st_size < self._identity[2]:
            raise self._changed(f"truncated to {st.st_size} bytes")
        if (st.st_size, st.st_mtime_ns) != self._identity[2:]:
            raise self._changed("rewritten in place")
        out = np.empty(self.shape, np.float32)
        got = os.preadv(self._fd, [out], self.offset + i * self.sample_bytes)
        if got != self.sample_bytes:  # truncated between the check and the read
            raise self._changed(f"truncated: sample {i} read {got} of {self.sample_bytes} bytes")
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            raise self._changed("removed") from None
        if (now.st_dev, now.st_ino) != self._identity[:2]:
            raise self._changed("replaced by another file")
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit `os` may be gone already
            self.close()


class OpenFWISource:
    """(seismic (S, T, R), velocity (1, H, W)) float32 pairs, one ``pread`` per array and sample.

    Picklable (grain worker processes reopen the files from the paths).
    """

    def __init__(self, pairs: list[tuple[Path, Path]], spec: DatasetSpec):
        self.spec = spec
        self.files = [(Path(s), Path(v)) for s, v in pairs]
        self._open_all()

    def _open_all(self) -> None:
        self._data, self._model, counts = [], [], []
        for seis_path, vel_path in self.files:
            seis = SampleFile(seis_path, self.spec.seismic_shape)
            vel = SampleFile(vel_path, self.spec.velocity_shape)
            if len(seis) != len(vel):
                raise ValueError(f"{seis_path} holds {len(seis)} samples but {vel_path} holds {len(vel)}")
            self._data.append(seis)
            self._model.append(vel)
            counts.append(len(seis))
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __getstate__(self) -> dict:
        return {"spec": self.spec, "files": self.files}

    def __setstate__(self, state: dict) -> None:
        self.spec, self.files = state["spec"], state["files"]
        self._open_all()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range [0, {len(self)})")
        f = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return f, index - int(self._offsets[f])

    def describe(self, index: int) -> str:
        f, i = self.locate(int(index))
        return f"sample {i} of {self.files[f][0].name} / {self.files[f][1].name}"

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        f, i = self.locate(int(index))
        return self._data[f].read(i), self._model[f].read(i)


def read_sample(arr: np.memmap, i: int) -> np.ndarray:
    """Copy sample ``i`` out of a memory map, then release its pages from this process."""
    out = np.array(arr[i])
    mm = getattr(arr, "_mmap", None)
    if mm is not None:
        start = arr.offset + i * out.nbytes
        lo = max(start - _FAULT_AROUND, 0) // _PAGE * _PAGE
        hi = min(-(-(start + out.nbytes + _FAULT_AROUND) // _PAGE) * _PAGE, len(mm))
        if hi > lo:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    return out


def map_npy(path: str | os.PathLike, fix: str = "re-download or regenerate it") -> np.ndarray:
    """Memory-map a .npy array file; every problem is one ValueError / FileNotFoundError naming the file.

    Pickled objects are refused, never loaded (np.load's allow_pickle stays False).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a .npy file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes); {fix}")
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, EOFError, OSError) as e:
        reason = str(e).split(". ")[0]
        if "pickle" in reason or "Python objects" in reason:
            reason = "it holds pickled Python objects or is not in NumPy's format; it is never unpickled"
        elif "mmap length" in reason or isinstance(e, EOFError):
            reason = "it is truncated"
        raise ValueError(f"{path} is not a readable .npy file ({reason}); {fix}") from None


def open_npy(path: Path, sample_shape: tuple[int, ...]) -> np.memmap:
    """Memory-map an (N, *sample_shape) float32 .npy, naming the file in every error."""
    arr = map_npy(path)
    if arr.ndim != 1 + len(sample_shape) or tuple(arr.shape[1:]) != tuple(sample_shape):
        raise ValueError(f"{path} has shape {arr.shape}, expected (N, {', '.join(map(str, sample_shape))})")
    if arr.dtype != np.float32:
        raise ValueError(f"{path} has dtype {arr.dtype}, expected float32")
    return arr
