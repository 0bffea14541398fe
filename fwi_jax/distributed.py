"""JAX's multi-process runtime: one process per host (or per GPU), all devices in one global mesh.

On TPU pods and under SLURM `jax.distributed.initialize()` finds its peers itself; elsewhere pass
the coordinator (process 0's host:port), the number of processes and this process's id. On CPU,
cross-process collectives go through gloo.
"""

from __future__ import annotations

import jax


def initialize(mode: str = "off", coordinator: str = "", num_processes: int = 0, process_id: int = -1) -> bool:
    """Start the runtime: mode "off" (single process), "auto" (TPU pods, SLURM) or "explicit".

    Returns whether a multi-process runtime was started. Must run before any JAX computation.
    """
    if mode == "off":
        return False
    if mode not in ("auto", "explicit"):
        raise ValueError(f"--distributed must be off, auto or explicit, got {mode!r}")
    if mode == "explicit":
        missing = [n for n, v in (("coordinator", coordinator), ("num_processes", num_processes)) if not v]
        if process_id < 0:
            missing.append("process_id")
        if missing:
            raise ValueError(f"--distributed=explicit needs --{' --'.join(missing)}")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id {process_id} must be in [0, {num_processes})")
    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if mode == "auto":
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    return True
