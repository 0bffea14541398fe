"""JAX's multi-process runtime: one process per host (or per GPU), all devices in one global mesh.

On TPU pods and under SLURM `jax.distributed.initialize()` finds its peers itself; elsewhere pass
the coordinator (process 0's host:port), the number of processes and this process's id. On CPU,
cross-process collectives go through gloo.

A dead peer is noticed by the coordination service after `heartbeat_timeout` seconds without its
heartbeats (the coordinator's own death at once, by its closed connection); a process that finished
waits up to `shutdown_timeout` seconds for the others at the exit barrier. JAX's defaults are 100 s
and 300 s; ours are chosen for training runs (docs/reliability.md#multi-host-runs).
"""

from __future__ import annotations

HEARTBEAT_TIMEOUT_S = 60
SHUTDOWN_TIMEOUT_S = 120


def check(mode: str, coordinator: str = "", num_processes: int = 0, process_id: int = -1) -> None:
    """The flags' errors, before anything starts (no JAX import: the supervisor calls it too)."""
    if mode not in ("off", "auto", "explicit"):
        raise ValueError(f"--distributed must be off, auto or explicit, got {mode!r}")
    if mode == "explicit":
        missing = [n for n, v in (("coordinator", coordinator), ("num_processes", num_processes)) if not v]
        if process_id < 0:
            missing.append("process_id")
        if missing:
            raise ValueError(f"--distributed=explicit needs --{' --'.join(missing)}")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"--process_id {process_id} must be in [0, {num_processes})")


def initialize(
    mode: str = "off",
    coordinator: str = "",
    num_processes: int = 0,
    process_id: int = -1,
    heartbeat_timeout: int = HEARTBEAT_TIMEOUT_S,
    shutdown_timeout: int = SHUTDOWN_TIMEOUT_S,
) -> bool:
    """Start the runtime: mode "off" (single process), "auto" (TPU pods, SLURM) or "explicit".

    Returns whether a multi-process runtime was started. Must run before any JAX computation.
    """
    check(mode, coordinator, num_processes, process_id)
    if mode == "off":
        return False
    if heartbeat_timeout < 1 or shutdown_timeout < 1:
        raise ValueError("--heartbeat_timeout and --shutdown_timeout must be at least 1 second")
    import jax  # here, not at the top: check() serves the JAX-free supervisor

    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    timeouts = {"heartbeat_timeout_seconds": heartbeat_timeout, "shutdown_timeout_seconds": shutdown_timeout}
    if mode == "auto":
        jax.distributed.initialize(**timeouts)
    else:
        jax.distributed.initialize(coordinator, num_processes, process_id, **timeouts)
    return True
