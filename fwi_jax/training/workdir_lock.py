"""One training run per workdir: a lock file naming its holder, stale locks taken over."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import jax


class WorkdirLock:
    """One run per workdir: ``<workdir>/run.lock`` names its holder (host, pid, start time, command).

    A second run meets a clear error at once. A lock left by a dead process on this host is taken
    over (with a note); one from another host (a shared filesystem) is taken over only with
    ``take_over=True`` (``python -m fwi_jax.train --take-over-lock``), after checking that run is
    gone. Only process 0 of a multi-process run holds it. Readers (evaluate, predict) ignore it.
    """

    NAME = "run.lock"

    def __init__(self, workdir: Path, take_over: bool = False):
        self.path = Path(workdir) / self.NAME
        self.take_over = take_over
        self.held = False

    def _holder(self) -> dict:
        for _ in range(2):
            try:
                return json.loads(self.path.read_text())
            except (OSError, ValueError):
                time.sleep(0.5)  # a holder between creating and writing it
        return {"host": socket.gethostname(), "pid": -1}  # unreadable: stale

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") != socket.gethostname():
            return self.take_over
        try:
            pid = int(holder.get("pid", -1))
            if pid <= 0:
                return True
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except (OSError, ValueError):
            return False  # alive (another user's) or unknown: never steal
        return False

    def __enter__(self) -> WorkdirLock:
        if jax.process_index() != 0:
            return self
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join(sys.argv),
        }
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if not self._stale(holder):
                    raise RuntimeError(self._in_use(holder)) from None
                print(f"taking over the lock of a run that is gone ({self._describe(holder)})", file=sys.stderr)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise RuntimeError(self._in_use(self._holder()))

    def _describe(self, holder: dict) -> str:
        return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"

    def _in_use(self, holder: dict) -> str:
        hint = "wait for it to finish or stop it, or use another --workdir"
        if holder.get("host") != socket.gethostname():
            hint += "; if that run is gone (a shared filesystem), rerun with --take-over-lock"
        return f"{self.path.parent} is in use by another training run ({self._describe(holder)}): {hint}"

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
