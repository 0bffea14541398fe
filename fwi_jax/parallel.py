"""Device mesh, shardings and host-local -> global arrays for data parallelism."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """1-axis ("data",) mesh over all (global) devices."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def abstract_like(tree: Any, sharding: NamedSharding) -> Any:
    """ShapeDtypeStructs of ``tree`` carrying ``sharding`` (e.g. a checkpoint's restore target on this mesh)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
    n = mesh.devices.size
    if batch_size % n:
        lo, hi = batch_size // n * n, -(-batch_size // n) * n
        raise ValueError(
            f"{what}={batch_size} is not divisible by the {n} devices; use a multiple of {n} "
            f"(e.g. {hi}{f' or {lo}' if lo else ''}) via --config.{what}=..."
        )


def global_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble each process's local slice of the batch into globally sharded arrays."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
