"""SIGTERM / SIGINT as a flag the training loop polls: it saves a checkpoint and returns."""

from __future__ import annotations

import signal
import threading


class StopFlag:
    """SIGTERM / SIGINT set a flag; the loop saves a checkpoint and returns. A second Ctrl-C aborts."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
