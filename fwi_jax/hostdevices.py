"""Host process setup for CPU runs: every core as a JAX device; huge pages for XLA:CPU's buffers."""

from __future__ import annotations

import os
import platform
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


HUGEPAGES_ENV = "FWI_JAX_HUGEPAGES"
_TUNABLE = "glibc.malloc.hugetlb"


def _transparent_hugepages_available() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def use_transparent_hugepages() -> None:
    """Restart this command with glibc's malloc backing large blocks by transparent huge pages.

    XLA:CPU allocates every execution's temporary buffer afresh (GBs per batch-16 train step); on
    4 KiB pages each step then pays ~10^5 page faults, which on this project's 2-core VM made the
    train step ~1.4x slower (PyTorch gains about as much). glibc reads the tunable only at start,
    hence the re-exec (same pid, same arguments). Call it only from a command's ``__main__``
    block, before any work. Skipped off Linux/glibc, without THP, when GLIBC_TUNABLES already
    names the tunable, or when FWI_JAX_HUGEPAGES=0.
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (
        not sys.platform.startswith("linux")
        or os.environ.get(HUGEPAGES_ENV, "1") == "0"
        or _TUNABLE in tunables
        or platform.libc_ver()[0] != "glibc"
        or not _transparent_hugepages_available()
    ):
        return
    env = dict(os.environ, GLIBC_TUNABLES=f"{tunables}:{_TUNABLE}=1" if tunables else f"{_TUNABLE}=1")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
