"""Double buffering: host batches are assembled into global device arrays one or more steps ahead,
in a background thread, so the copy to the devices overlaps the running step."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import jax
from jax.sharding import Mesh

from fwi_jax import parallel

_DONE = object()


class DevicePrefetch:
    """Iterate ``host`` (dicts of this process's numpy slices) as global batches, ``depth`` ahead.

    An error in the reader thread is raised from ``next`` at the batch it broke; ``close`` stops
    the thread and closes ``host`` (call it on every exit).
    """

    def __init__(self, host: Iterator[dict], mesh: Mesh, depth: int = 2):
        self.host, self.mesh = host, mesh
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="fwi_jax-device-prefetch", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            for batch in self.host:
                if not self._put(parallel.global_batch(batch, self.mesh)):
                    return
            self._put(_DONE)
        except BaseException as e:  # handed to the consumer, raised where the batch was wanted
            self._put(e)

    def _put(self, item) -> bool:
        """Queue ``item``, waiting for room; False when ``close`` stopped the thread first."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> DevicePrefetch:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        item = self._queue.get()
        if item is _DONE:
            self._queue.put(_DONE)  # later calls stop too
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        close = getattr(self.host, "close", None)
        if close is not None:
            close()
