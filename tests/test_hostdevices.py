"""Host setup: the huge-page re-exec keeps the command and its arguments, and can be turned off."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from fwi_jax import hostdevices

SCRIPT = """
import os, sys
from fwi_jax.hostdevices import use_transparent_hugepages
print("start", flush=True)
use_transparent_hugepages()
print(os.getpid(), os.environ.get("GLIBC_TUNABLES", ""), sys.argv[1:])
"""


def _run(tmp_path: Path, **env) -> list[str]:
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    full_env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | env
    root = str(Path(__file__).resolve().parents[1])
    full_env["PYTHONPATH"] = root + os.pathsep + full_env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, str(script), "a b", "--x=1"], env=full_env, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


@pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or platform.libc_ver()[0] != "glibc"
    or not hostdevices._transparent_hugepages_available(),
    reason="needs Linux, glibc and transparent huge pages",
)
def test_hugepage_reexec_keeps_arguments_and_runs_once(tmp_path):
    lines = _run(tmp_path, GLIBC_TUNABLES="glibc.malloc.arena_max=4")
    assert lines[:2] == ["start", "start"]  # restarted exactly once
    pid, tunables, args = lines[2].split(" ", 2)
    assert tunables == "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"  # the user's tunables kept
    assert args == "['a b', '--x=1']"


def test_hugepage_reexec_can_be_disabled(tmp_path):
    lines = _run(tmp_path, FWI_JAX_HUGEPAGES="0")
    assert lines[0] == "start" and len(lines) == 2
    assert lines[1].split(" ", 2)[1] == ""


def test_hugepage_reexec_respects_an_explicit_setting(tmp_path):
    lines = _run(tmp_path, GLIBC_TUNABLES="glibc.malloc.hugetlb=0")
    assert lines[0] == "start" and len(lines) == 2
    assert "glibc.malloc.hugetlb=0" in lines[1]
