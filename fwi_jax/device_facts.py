"""What an accelerator is: its kind, memory, whether bfloat16 is native, and its dense bf16 peak.

Used by `python -m fwi_jax.doctor` and by benchmarks/accelerator.py (model FLOP utilization).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

# Dense (no sparsity) bfloat16 peak, TFLOP/s, from each vendor's datasheet (SXM / board parts at
# boost clock). Matched as a case-insensitive substring of `device_kind`, first match wins.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("h200 nvl", 835.0),  # NVIDIA H200 datasheet, NVL
    ("h200", 989.0),  # NVIDIA H200 datasheet, SXM (same tensor cores as H100 SXM)
    ("h100 pcie", 756.0),  # NVIDIA H100 datasheet, PCIe
    ("h100 nvl", 835.0),  # NVIDIA H100 datasheet, NVL
    ("h100", 989.0),  # NVIDIA H100 datasheet, SXM
    ("gh200", 989.0),
    ("b200", 2250.0),  # NVIDIA Blackwell datasheet, dense
    ("a100", 312.0),  # NVIDIA A100 datasheet
    ("l40s", 362.0),  # NVIDIA L40S datasheet
    ("l40", 181.0),  # NVIDIA L40 datasheet
    ("l4", 121.0),  # NVIDIA L4 datasheet
    ("a10", 125.0),  # NVIDIA A10 datasheet
    ("tpu v6", 918.0),  # Google Cloud TPU v6e (Trillium) documentation
    ("tpu v5p", 459.0),  # Google Cloud TPU v5p documentation
    ("tpu v5", 197.0),  # Google Cloud TPU v5e ("TPU v5 lite") documentation
    ("tpu v4", 275.0),  # Google Cloud TPU v4 documentation
)

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclasses.dataclass(frozen=True)
class DeviceFacts:
    platform: str  # cpu | gpu | tpu
    kind: str
    count: int
    memory_bytes: int | None  # per device, JAX's allocator limit (75% of it by default); host RAM for the CPU
    bf16_native: bool
    bf16_note: str
    bf16_peak_tflops: float | None  # datasheet dense bf16 peak per device, when known

    def memory_text(self) -> str:
        return f"{self.memory_bytes / 2**30:.1f} GiB" if self.memory_bytes else "unknown"


# CPU features that decide XLA:CPU's and oneDNN's kernels (x86, then Arm), as /proc/cpuinfo spells them.
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2", "bf16", "i8mm")  # fmt: skip


def cpu_info() -> tuple[str, set[str]]:
    """(CPU model name, feature flags) from /proc/cpuinfo; ("", set()) where there is none."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (s.strip() for s in line.partition(":"))
            if key in ("model name", "Model", "Hardware") and not model:
                model = value
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:  # not Linux
        pass
    return model, flags


def cpu_flags() -> set[str]:
    return cpu_info()[1]


def _host_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _device_memory(device) -> int | None:
    try:
        stats = device.memory_stats()
    except Exception:  # backends without memory stats raise or return None
        return None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def bf16_peak_tflops(kind: str) -> float | None:
    k = kind.lower()
    return next((peak for name, peak in BF16_PEAK_TFLOPS if name in k), None)


def _bf16(device) -> tuple[bool, str]:
    if device.platform == "tpu":
        return True, "native (TPU matrix units)"
    if device.platform == "gpu":
        cc = getattr(device, "compute_capability", None)
        try:
            major = int(str(cc).split(".")[0])
        except ValueError:
            return False, f"unknown (compute capability {cc!r})"
        if major >= 8:
            return True, f"native (tensor cores, compute capability {cc})"
        return False, f"emulated (compute capability {cc} < 8.0): train in float32"
    flags = cpu_flags() & set(CPU_BF16_FLAGS)
    if flags:
        return True, f"CPU has {' and '.join(sorted(flags))}; float32 stays the CPU default"
    return False, "emulated on this CPU (no avx512_bf16 / amx_bf16): use float32"


def describe(devices=None) -> DeviceFacts:
    """Facts about the first device (all devices of one process share a kind in practice)."""
    import jax  # here, so that `doctor` can report a JAX that fails to import

    devices = devices if devices is not None else jax.devices()
    d = devices[0]
    native, note = _bf16(d)
    memory = _host_memory() if d.platform == "cpu" else _device_memory(d)
    return DeviceFacts(
        platform=d.platform,
        kind=d.device_kind,
        count=len(devices),
        memory_bytes=memory,
        bf16_native=native,
        bf16_note=note,
        bf16_peak_tflops=bf16_peak_tflops(d.device_kind) if d.platform != "cpu" else None,
    )
