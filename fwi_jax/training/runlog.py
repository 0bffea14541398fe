"""What a training run reports: metrics (JSONL + TensorBoard), a progress bar, rates, the
non-finite guard, and the stop flag that SIGTERM / SIGINT raise."""

from __future__ import annotations

import json
import signal
import threading
import time
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
        self._jsonl.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            if self._tb is not None:
                self._tb.close()


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


def check_finite(losses: np.ndarray, first_step: int, last_checkpoint: int | None) -> None:
    """Raise naming the first step whose training loss is NaN / inf (losses of steps first_step, ...)."""
    finite = np.isfinite(losses)
    if finite.all():
        return
    bad = first_step + int(np.argmin(finite))
    note = f"last checkpoint: step {last_checkpoint}" if last_checkpoint else "no checkpoint"
    raise FloatingPointError(
        f"training loss became {losses[~finite][0]} at step {bad} "
        f"(steps {first_step}..{first_step + len(losses) - 1}); {note}. Lower optim.lr or check the data."
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
        check_finite(np.array([h["loss"] for h in host]), step - len(host) + 1, last_checkpoint)
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

    def val(self, step: int, metrics: dict[str, float]) -> None:
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
