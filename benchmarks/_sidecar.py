"""Both ends of the sidecar protocol: JSON lines on stdin / stdout, one reply per request.

The PyTorch and deepwave sides of the benchmarks run in another interpreter (on these machines a
Python 3.11 venv with torch + numpy only), kept alive as a sidecar so that its timings can
alternate round by round with JAX's in the same run. That interpreter imports this module too
(the script's folder is on its path), so it imports neither JAX nor fwi_jax at module level: the
client's `Sidecar` finds the interpreter through fwi_jax.torchenv only when it starts one.

Server (a sidecar script)::

    serve({"setup": setup, "time": time_it})      # handler(msg) -> reply dict; "quit" ends the loop

Client (a benchmark)::

    with Sidecar("_torch_step.py") as side:
        side.ask("setup", batch=16)
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent

Handler = Callable[[dict], dict]


def timings(fn: Callable[[], object], n: int, sync: Callable[[], object] | None = None, warmup: int = 0) -> list[float]:
    """Seconds of each of ``n`` calls of ``fn`` after ``warmup`` untimed ones; ``sync`` waits for the
    device inside the timed span (CUDA, or a JAX ``block_until_ready`` left out of ``fn``)."""
    out = []
    for k in range(warmup + n):
        t = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        if k >= warmup:
            out.append(time.perf_counter() - t)
    return out


def timed(fn: Callable[[], object]) -> float:
    """Seconds of one call of ``fn``."""
    return timings(fn, 1)[0]


def serve(handlers: Mapping[str, Handler], stamp: Mapping[str, object] | None = None) -> None:
    """Answer requests ``{"cmd": NAME, ...}`` from stdin with ``handlers[NAME](msg)`` until "quit".

    Every reply carries ``stamp`` (versions, threads). An unknown command or a handler's exception
    is answered with ``{"error": ...}`` (the client raises it) instead of ending the process.
    """
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        if cmd == "quit":
            return
        try:
            reply = handlers[cmd](msg) if cmd in handlers else {"error": f"unknown command {cmd!r}"}
        except Exception:  # reported to the client, which raises it with the traceback
            reply = {"error": traceback.format_exc()}
        print(json.dumps({**reply, **(stamp or {})}), flush=True)


class Sidecar:
    """A sidecar script (a path, or a file name in benchmarks/) in the PyTorch interpreter.

    ``python``: the interpreter; default, the one fwi_jax.torchenv finds ($FWI_JAX_TORCH_PYTHON).
    """

    def __init__(self, script: str | Path, python: str | None = None):
        from fwi_jax import torchenv  # here, not at the top: the sidecar interpreter has no fwi_jax

        self.proc = torchenv.start_script(HERE / script, python=python)

    def ask(self, cmd: str, **msg) -> dict:
        """Send one request and return its reply; raises the sidecar's error."""
        self.proc.stdin.write(json.dumps({"cmd": cmd, **msg}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the sidecar died (see its stderr above)")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"the sidecar's {cmd!r} failed: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
