"""A multi-process run whose peer dies ends in one line, not a native crash dump.

When a process of a multi-process run dies (SIGKILL, a lost node), JAX's coordination service notices
the missing heartbeats (or, for the coordinator itself, the closed connection) and aborts every
survivor from C++: exit code 134 and hundreds of lines of C++ and thread stacks. So `fwi_jax.train`
with `--distributed` runs the training in a child process and passes its stderr through; from the
first line of the coordination service's abort on, the child's stderr goes to
`<workdir>/crash.process<I>.log` instead (with the child's own `error:` line, held back until it
exits: a collective that failed on the lost peer's socket comes first), and the parent prints one line
naming the lost process, how long the wait was and the fix (rerun every process; the run resumes from
its last checkpoint).
This module imports no JAX: the parent stays small.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

SUPERVISED_ENV = "FWI_JAX_SUPERVISED"

# absl's C++ log prefix (`E1202 19:40:38.759304    1933 coordination_service.cc:1518] ...`) from the
# coordination service or the client that aborts on its errors.
_ABORT_LINE = re.compile(rb"^[EF]\d{4} [\d:.]+\s+\d+ (coordination_service\S*|client\.h):\d+\]")
_MAYBE_LOG_PREFIX = re.compile(rb"^[EF](\d|$)")


def _may_be_held(partial: bytes) -> bool:
    return bool(_MAYBE_LOG_PREFIX.match(partial)) or b"error: ".startswith(partial[:7])


def supervised() -> bool:
    """Whether this process is the supervised child (or the user switched supervision off)."""
    return os.environ.get(SUPERVISED_ENV) == "1"


def lost_processes(log: str, num_processes: int) -> list[int]:
    """The process ids the coordination service reported lost, from the survivor's native log."""
    unhealthy = re.search(r"unhealthy \(stopped sending heartbeats\):(.*?)(The tasks|\[type|$)", log, re.S)
    if unhealthy:
        text = unhealthy.group(1)
        ids = re.findall(r"task:(\d+)", text) or re.findall(r"^\s*(\d+)\s*$", text, re.M)
        return sorted({int(i) for i in ids if int(i) < num_processes})
    if "Failed to send RPC to coordination service" in log or "leader task" in log:
        return [0]  # the coordinator runs in process 0
    return []


def last_checkpoint(workdir: str | Path) -> int | None:
    """The newest complete checkpoint step (Orbax's step folders; unfinished ones carry a suffix)."""
    directory = Path(workdir) / "checkpoints"
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] if directory.is_dir() else []
    return max(steps, default=None)


def describe_loss(
    log: str, process_id: int, num_processes: int, heartbeat_timeout: int, workdir: str | Path, log_file: Path
) -> str:
    """The one line printed when a peer was lost."""
    lost = lost_processes(log, num_processes)
    me = f"process {process_id}" if process_id >= 0 else "this process"
    if lost == [0] and process_id != 0 and "heartbeats" not in log:
        what = "lost the coordinator (process 0): it died or its host is unreachable"
    elif lost:
        names = ", ".join(map(str, lost))
        what = f"lost process {names}: no heartbeat for {heartbeat_timeout} s (--heartbeat_timeout), it died or hung"
    else:
        what = "was stopped by JAX's coordination service: a peer process died or is unreachable"
    every = f"all {num_processes} processes" if num_processes else "all processes"
    step = last_checkpoint(workdir)
    resume = f"its last complete checkpoint (step {step})" if step is not None else "the start (no checkpoint yet)"
    return (
        f"error: {me} {what}. Rerun {every} with the same commands to resume from "
        f"{resume}. The native log is in {log_file}"
    )


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the parent dies, so killing a process kills its training."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _crash_log(workdir: str | Path, process_id: int) -> Path:
    name = f"crash.process{max(process_id, 0)}.log"
    try:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        path = Path(workdir) / name
        path.touch()
        return path
    except OSError:
        return Path("/tmp") / f"fwi_jax.{os.getpid()}.{name}"


def run(
    process_id: int,
    num_processes: int,
    heartbeat_timeout: int,
    workdir: str | Path,
    command: list[str] | None = None,
) -> int:
    """Run this command again (or `command`) as a supervised child; return its exit code, or 1 after a
    lost peer."""
    env = dict(os.environ, **{SUPERVISED_ENV: "1"})
    child = subprocess.Popen(
        command or [sys.executable, *sys.orig_argv[1:]],
        env=env,
        stderr=subprocess.PIPE,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        process_group=0,  # the terminal's Ctrl-C reaches the parent, which passes it on once
    )

    def forward(signum, _frame):
        if child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)

    log_file: Path | None = None
    held = bytearray()  # the child's `error: ...` lines: a collective's failure precedes the abort
    captured = bytearray()
    pending = b""
    out = sys.stderr.buffer
    fd = child.stderr.fileno()
    while chunk := os.read(fd, 1 << 16):
        if log_file is not None:
            captured += chunk
            continue
        pending += chunk
        lines = pending.splitlines(keepends=True)
        pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for i, line in enumerate(lines):
            if _ABORT_LINE.match(line):
                log_file = _crash_log(workdir, process_id)
                captured += b"".join(lines[i:]) + pending
                pending = b""
                break
            if held or line.startswith(b"error: "):  # the error and what follows it
                held += line
            else:
                out.write(line)
        # A partial line (a progress bar) goes through at once unless it may begin the abort or an
        # error line (a long `error:` line can arrive in pieces) or follows a held error.
        if log_file is None and pending and not held and not _may_be_held(pending):
            out.write(pending)
            pending = b""
        out.flush()
    out.write(pending)
    code = child.wait()
    if log_file is None:
        out.write(held)
        out.flush()
        return code if code >= 0 else 128 - code
    out.flush()
    log_file.write_bytes(bytes(held + captured))
    print(
        describe_loss(
            captured.decode(errors="replace"), process_id, num_processes, heartbeat_timeout, workdir, log_file
        ),
        file=sys.stderr,
    )
    return 1
