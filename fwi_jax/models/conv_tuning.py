"""Convolution forms chosen by measurement on this CPU: the cache and its lookup.

A form that wins on one CPU can lose on another (the matrix-product forms of `cpu_convs` were chosen
on an AVX2 machine). `fwi_jax.models.tune` times each convolution of a model in its candidate forms ("xla": XLA's own
convolution; "matmul": the matrix-product form of `cpu_convs`; "im2col": for stride-1 convolutions,
one full im2col product instead of the shifted products; "hybrid": XLA's forward with the
matrix-product form's gradients; see `candidates`) at the run's batch and
records the one chosen (`tune.choose`) in ``<cache root>/conv_forms.json`` under a machine key (CPU model, ISA
flags, jax and jaxlib versions) and a layer key (kind, input shape, features, kernel, strides,
padding, dtype, train). `cpu_convs.conv` / `conv_transpose` look each layer up when
``conv_impl="auto"`` runs on a CPU; a layer without an entry keeps the shape rules, so nothing
changes until a machine is tuned. A cache that cannot be read, or an entry naming no known form, is
ignored with one warning, never an error. Every form has the same parameters and numbers
(tests/test_models.py): a choice changes speed only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import jax

from fwi_jax import fileio, paths
from fwi_jax.device_facts import ISA_FLAGS, cpu_info

FORMS = ("xla", "matmul", "im2col", "hybrid")
CACHE_NAME = "conv_forms.json"
# Part of the machine key: bump it when a form's code changes what it costs, so earlier measurements
# stop applying (2: patch_matmul's weight gradient transposes the narrower operand, 2026-12-06).
FORMS_REVISION = 2


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """A convolution as `cpu_convs` builds it: what decides its speed."""

    kind: str  # "conv" or "conv_transpose"
    in_shape: tuple[int, ...]  # (B, H, W, C) as traced
    features: int
    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], ...]  # Flax's
    dtype: str
    train: bool

    @property
    def key(self) -> str:
        def dims(t):
            return "x".join(str(int(n)) for n in t)

        pad = ",".join(f"{lo}:{hi}" for lo, hi in self.padding)
        return (
            f"{self.kind} in={dims(self.in_shape)} out={self.features} k={dims(self.kernel)} "
            f"s={dims(self.strides)} p={pad} {self.dtype} {'train' if self.train else 'infer'}"
        )


def covers_input(in_shape, kernel, padding) -> bool:
    """The kernel covers the whole unpadded input (convblock8): the conv is a dense layer."""
    return all(tuple(p) == (0, 0) for p in padding) and tuple(in_shape[1:3]) == tuple(kernel)


def candidates(layer: LayerSpec) -> tuple[str, ...]:
    """The forms that differ for this layer: XLA's and the matrix-product form for every layer; for a
    conv that does not cover its input also, at stride 1, one full im2col product (the
    matrix-product form is then shifted products) and, in training, XLA's forward with the
    matrix-product form's gradients ("hybrid")."""
    if layer.kind != "conv" or covers_input(layer.in_shape, layer.kernel, layer.padding):
        return FORMS[:2]
    return FORMS[:2] + ("im2col",) * (layer.strides == (1, 1)) + ("hybrid",) * layer.train


def spec(kind: str, in_shape, features: int, kernel, strides, padding, dtype, train: bool) -> LayerSpec:
    return LayerSpec(
        kind,
        tuple(int(n) for n in in_shape),
        int(features),
        tuple(int(k) for k in kernel),
        tuple(int(s) for s in strides),
        tuple((int(lo), int(hi)) for lo, hi in padding),
        jax.numpy.dtype(dtype).name,
        bool(train),
    )


def cache_path() -> Path:
    return paths.cache_root() / CACHE_NAME


@functools.cache
def machine_key() -> str:
    """What decides which form is faster: the CPU, its vector units, the compiler's version and the forms' code."""
    import jaxlib

    model, flags = cpu_info()
    isa = "+".join(f for f in ISA_FLAGS if f in flags) or "-"
    versions = f"jax {jax.__version__} | jaxlib {jaxlib.__version__} | forms {FORMS_REVISION}"
    return f"{model or 'unknown CPU'} | {isa} | {versions}"


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int) -> dict:
    del mtime_ns  # part of the lru key: a rewritten file is read again
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
            raise ValueError("expected an object with 'machines'")
        return data
    except (OSError, ValueError) as e:
        warnings.warn(
            f"{path}: the convolution-form cache is unreadable ({e}); ignored, the shape rules apply. "
            "`python -m fwi_jax.models tune --config CONFIG` rebuilds it.",
            stacklevel=2,
        )
        return {"machines": {}}


def load(path: Path | None = None) -> dict:
    """The whole cache ({"machines": {machine key: {layer key: entry}}}); empty when there is none."""
    path = path or cache_path()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return {"machines": {}}
    return _read(str(path), mtime)


_RECORDERS: list[list[LayerSpec]] = []


@contextlib.contextmanager
def recording() -> Iterator[list[LayerSpec]]:
    """The layers `cpu_convs` builds (on any backend) while a model is traced inside this block."""
    _RECORDERS.append([])
    try:
        yield _RECORDERS[-1]
    finally:
        _RECORDERS.pop()


def record(layer: LayerSpec) -> None:
    """Note a layer `cpu_convs` builds, for every `recording()` block open."""
    for recorder in _RECORDERS:
        recorder.append(layer)


_IGNORED: list[bool] = []


@contextlib.contextmanager
def ignoring_cache() -> Iterator[None]:
    """Models traced inside this block take the shape rules, as on an untuned machine (benchmarks
    compare the two in one process)."""
    _IGNORED.append(True)
    try:
        yield
    finally:
        _IGNORED.pop()


def tuned_form(layer: LayerSpec) -> str | None:
    """The form measured fastest for this layer on this machine, or None (no cache, no entry)."""
    if _IGNORED:
        return None
    entry = load()["machines"].get(machine_key(), {}).get(layer.key)
    if entry is None:
        return None
    form = entry.get("form") if isinstance(entry, dict) else None
    if form not in candidates(layer):
        warnings.warn(f"{cache_path()}: the entry for {layer.key!r} names no known form ({form!r}); ignored",
                      stacklevel=2)  # fmt: skip
        return None
    return form


def save(entries: dict[str, dict], path: Path | None = None) -> Path:
    """Merge ``entries`` (layer key -> {"form", "ms"}) into this machine's part of the cache, atomically."""
    path = path or cache_path()
    data = {"machines": {k: dict(v) for k, v in load(path)["machines"].items() if isinstance(v, dict)}}
    data["machines"].setdefault(machine_key(), {}).update(entries)
    return fileio.atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
