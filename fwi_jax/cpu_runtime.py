"""Host process setup for CPU runs: every core as a JAX device; huge pages for XLA:CPU's buffers."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys


def _jax_devices_created() -> bool:
    """Whether JAX has created its devices: XLA reads XLA_FLAGS then, not when JAX is imported."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge  # private, but present since jax 0.4: no public equivalent

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return True  # cannot tell: leave the devices as they are


def use_all_cpu_cores() -> None:
    """Ask XLA:CPU for one host device per core. Must run before JAX creates its devices (the first
    computation or ``jax.devices()``); importing JAX before it is fine.

    Does nothing when the devices exist already or the user set a device count in XLA_FLAGS.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or _jax_devices_created():
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={max(1, cores or 1)}".strip()


HUGEPAGES_ENV = "FWI_JAX_HUGEPAGES"
_TUNABLE = "glibc.malloc.hugetlb"
# Installed accelerator plugins: JAX would not run on the CPU, where the huge pages help.
_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu")


def _transparent_hugepages_available() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def _runs_on_cpu() -> bool:
    """Whether JAX will run on the CPU, judged without importing it (the restart must come first)."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    return not any(importlib.util.find_spec(name) for name in _ACCELERATOR_PLUGINS)


def _under_a_tool() -> bool:
    """A debugger, profiler or coverage tool is attached (a re-executed process would escape it).

    Judged by the hooks they install, not by imported modules (absl imports pdb, for one).
    """
    monitored = hasattr(sys, "monitoring") and any(sys.monitoring.get_tool(i) for i in range(6))
    return sys.gettrace() is not None or sys.getprofile() is not None or monitored


def use_transparent_hugepages() -> None:
    """Restart this command once with glibc's malloc backing large blocks by transparent huge pages.

    XLA:CPU allocates every execution's temporary buffer afresh (GBs per batch-16 train step); on
    4 KiB pages each step then pays ~10^5 page faults, which on this project's 2-core VM made the
    full-size train step ~1.4x slower (PyTorch gains about as much). glibc reads the tunable only
    at start, hence the re-exec (same pid, same arguments), announced in one line on stderr. Call
    it only from a command's ``__main__`` block, before any work. Skipped when FWI_JAX_HUGEPAGES=0,
    off Linux/glibc, without THP, when GLIBC_TUNABLES already names the tunable, when JAX will
    not run on the CPU, and under a debugger, profiler or coverage tool.
    """
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (
        not sys.platform.startswith("linux")
        or os.environ.get(HUGEPAGES_ENV, "1") == "0"
        or _TUNABLE in tunables
        or platform.libc_ver()[0] != "glibc"
        or not _transparent_hugepages_available()
        or not _runs_on_cpu()
        or _under_a_tool()
    ):
        return
    env = dict(os.environ, GLIBC_TUNABLES=f"{tunables}:{_TUNABLE}=1" if tunables else f"{_TUNABLE}=1")
    print(
        f"fwi_jax: restarting with {_TUNABLE}=1 (huge pages for XLA:CPU's buffers); {HUGEPAGES_ENV}=0 turns this off",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
