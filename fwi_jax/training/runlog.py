"""What a training run reports and guards: metrics (JSONL + TensorBoard), a progress bar, rates,
the non-finite guard, the stop flag that SIGTERM / SIGINT raise, and the workdir lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from fwi_jax.metrics import describe


class MetricWriter:
    """JSONL (always) and TensorBoard events (tensorboardX, no TensorFlow) on process 0."""

    def __init__(self, workdir: Path, tensorboard: bool):
        self.enabled = jax.process_index() == 0
        self._tb = None
        if not self.enabled:
            return
        self._jsonl = open(workdir / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        try:
            self._jsonl.write(json.dumps({"step": step, "split": split, **values}) + "\n")
            self._jsonl.flush()
            if self._tb is not None:
                for k, v in values.items():
                    self._tb.add_scalar(f"{split}/{k}", v, step)
        except OSError as e:
            raise OSError(
                e.errno,
                f"could not write the metrics of step {step} to {self._jsonl.name} ({e.strerror}); free "
                "space or fix permissions, then rerun the same command to resume from the last checkpoint",
            ) from None

    def close(self) -> None:
        """Close the files; a failing flush (a full disk) is reported, never raised: closing runs while
        another error (the one that names the problem) may be on its way out."""
        if not self.enabled:
            return
        for name, f in (("metrics.jsonl", self._jsonl), ("TensorBoard events", self._tb)):
            try:
                if f is not None:
                    f.close()
            except OSError as e:
                print(f"warning: could not flush the {name} ({e.strerror})", file=sys.stderr)


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


def _checkpoint_note(last_checkpoint: int | None) -> str:
    if last_checkpoint is None:
        return "no checkpoint was saved"
    return f"last good checkpoint: step {last_checkpoint} (nothing non-finite was saved)"


def check_finite(losses: np.ndarray, state_finite: np.ndarray, first_step: int, last_checkpoint: int | None) -> None:
    """Raise naming the first step (of first_step, first_step + 1, ...) whose training loss or
    model state (parameters, BatchNorm statistics, the objective's state) is NaN / inf."""
    bad_loss, bad_state = ~np.isfinite(losses), state_finite < 1
    if not (bad_loss.any() or bad_state.any()):
        return
    last = first_step + len(losses) - 1
    note = f"{_checkpoint_note(last_checkpoint)}. Lower optim.lr or check the data."
    if bad_loss.any() and (not bad_state.any() or np.argmax(bad_loss) <= np.argmax(bad_state)):
        bad = first_step + int(np.argmax(bad_loss))
        value = losses[bad_loss][0]
        raise FloatingPointError(f"training loss became {value} at step {bad} (steps {first_step}..{last}); {note}")
    bad = first_step + int(np.argmax(bad_state))
    raise FloatingPointError(
        f"the model state became non-finite at step {bad} (steps {first_step}..{last}): parameters, BatchNorm "
        f"statistics or the objective's state hold NaN or inf while the training loss is finite; {note}"
    )


def check_state(finite: bool, step: int, last_checkpoint: int | None) -> None:
    """The whole state (parameters and optimizer state too), checked at each logged, evaluated or saved step."""
    if not finite:
        raise FloatingPointError(
            f"the model state (parameters or optimizer state) became non-finite by step {step}; "
            f"{_checkpoint_note(last_checkpoint)}. Lower optim.lr or check the data."
        )


def check_finite_metrics(metrics: dict[str, float], step: int, what: str, last_checkpoint: int | None) -> None:
    bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
    if bad:
        raise FloatingPointError(
            f"{what} became non-finite at step {step} ({', '.join(bad)}); {_checkpoint_note(last_checkpoint)}. "
            "Lower optim.lr or check the data."
        )


class RunLog:
    """Train metrics averaged over each logging window, validation lines, rates and the progress bar.

    Train metrics stay on the devices until a window closes (one host transfer per window).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        tensorboard: bool,
        progress: bool,
        batch_size: int,
        steps_per_epoch: int,
        total_steps: int,
        start: int,
    ):
        self.writer = MetricWriter(workdir, tensorboard)
        self.batch_size, self.steps_per_epoch = batch_size, steps_per_epoch
        self.train_metrics: dict[str, float] = {}
        self.val_metrics: dict[str, float] = {}
        self._pending: list[dict] = []
        self._t, self._t_step = time.perf_counter(), start
        self._bar = None
        # steps (0-based range) -> a message naming the sample with NaN / inf, when inputs are flagged
        self.name_bad_inputs: Callable[[range], str | None] | None = None
        if progress and jax.process_index() == 0:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start, unit="step", desc="train", dynamic_ncols=True)

    @classmethod
    def of(cls, workdir: Path, config, steps_per_epoch: int, total_steps: int, start: int) -> RunLog:
        return cls(
            workdir,
            tensorboard=config.tensorboard,
            progress=config.progress,
            batch_size=config.batch_size,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            start=start,
        )

    def train(self, step: int, metrics: dict, *, flush: bool, last_checkpoint: int | None) -> None:
        """Record step `step`'s metrics; on `flush`, check, average, write and show the window."""
        self._pending.append(metrics)
        if not flush:
            return
        host = jax.device_get(self._pending)
        self._pending = []
        first = step - len(host) + 1
        self._check_inputs(np.array([h.get("inputs_finite", 1.0) for h in host]), first, last_checkpoint)
        losses, finite = (np.array([h[k] for h in host]) for k in ("loss", "finite"))
        check_finite(losses, finite, first, last_checkpoint)
        now = time.perf_counter()
        rate = (step - self._t_step) / max(now - self._t, 1e-9)
        self._t, self._t_step = now, step
        self.train_metrics = {k: float(np.mean([h[k] for h in host])) for k in host[0]}
        self.train_metrics |= {
            "steps_per_s": rate,
            "samples_per_s": rate * self.batch_size,
            "epoch": step / self.steps_per_epoch,
        }
        self.writer.write(step, "train", self.train_metrics)
        if self._bar is not None:
            samples_s = f"{rate * self.batch_size:.1f}"
            self._bar.set_postfix(
                loss=f"{self.train_metrics['loss']:.4f}", sps=f"{rate:.2f}", samples_s=samples_s, refresh=False
            )
            self._bar.update(step - self._bar.n)

    def _check_inputs(self, inputs_finite: np.ndarray, first: int, last_checkpoint: int | None) -> None:
        """NaN / inf in a step's raw inputs (flagged on the devices) is named by re-reading that step's samples."""
        if inputs_finite.min() >= 1:
            return
        bad = first + int(np.argmax(inputs_finite < 1))
        named = self.name_bad_inputs(range(bad - 1, bad)) if self.name_bad_inputs else None
        what = named or f"the training inputs of step {bad} hold NaN or inf; fix or drop the file that holds them"
        raise ValueError(f"{what}; {_checkpoint_note(last_checkpoint)}")

    def val(self, step: int, metrics: dict[str, float], last_checkpoint: int | None) -> None:
        check_finite_metrics(metrics, step, "validation metrics", last_checkpoint)
        self.val_metrics = metrics
        self.writer.write(step, "val", metrics)
        epoch = step / self.steps_per_epoch
        self.print(f"step {step} (epoch {epoch:.1f}): val loss {metrics['loss']:.4f} | " + describe(metrics))
        self._t, self._t_step = time.perf_counter(), step  # rates exclude evaluation

    def print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line)
        elif jax.process_index() == 0:
            print(line, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self.writer.close()


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
