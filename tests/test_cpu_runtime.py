"""Host setup: the huge-page re-exec keeps the command and its arguments, and can be turned off."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from fwi_jax import cpu_runtime

SCRIPT = """
import os, sys
from absl import app  # imports pdb, as the trainer does: not a debugger
from fwi_jax.cpu_runtime import use_transparent_hugepages
if os.environ.get("PROBE_TRACE"):  # as a debugger would
    sys.settrace(lambda *a: None)
print("start", flush=True)
use_transparent_hugepages()
print(os.getpid(), os.environ.get("GLIBC_TUNABLES", ""), sys.argv[1:])
"""


def _run(tmp_path: Path, stderr: list | None = None, **env) -> list[str]:
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    full_env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | env
    root = str(Path(__file__).resolve().parents[1])
    full_env["PYTHONPATH"] = root + os.pathsep + full_env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, str(script), "a b", "--x=1"], env=full_env, capture_output=True, text=True, check=True
    )
    if stderr is not None:
        stderr.extend(out.stderr.splitlines())
    return out.stdout.splitlines()


@pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or platform.libc_ver()[0] != "glibc"
    or not cpu_runtime._transparent_hugepages_available(),
    reason="needs Linux, glibc and transparent huge pages",
)
def test_hugepage_reexec_keeps_arguments_runs_once_and_says_so(tmp_path):
    err = []
    lines = _run(tmp_path, err, GLIBC_TUNABLES="glibc.malloc.arena_max=4", JAX_PLATFORMS="cpu")
    assert lines[:2] == ["start", "start"]  # restarted exactly once
    assert err == [
        "fwi_jax: restarting with glibc.malloc.hugetlb=1 (huge pages for XLA:CPU's buffers); "
        "FWI_JAX_HUGEPAGES=0 turns this off"
    ]
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


@pytest.mark.parametrize("env", [{"JAX_PLATFORMS": "cuda"}, {"PROBE_TRACE": "1", "JAX_PLATFORMS": "cpu"}])
def test_no_reexec_off_the_cpu_or_under_a_debugger(tmp_path, env):
    err = []
    lines = _run(tmp_path, err, **env)
    assert lines[0] == "start" and len(lines) == 2 and not err
