"""Expose every CPU core as a JAX device, for work that parallelizes over independent tasks."""

from __future__ import annotations

import os
import sys


def use_all_cpu_cores() -> None:
    """Ask XLA:CPU for one host device per core. Must run before JAX is first imported.

    Does nothing when JAX is already imported or the user set a device count in XLA_FLAGS.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" in sys.modules or "xla_force_host_platform_device_count" in flags:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={max(1, cores or 1)}".strip()
