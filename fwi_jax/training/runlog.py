"""What a training run shows: train metrics averaged over each logging window, validation lines,
rates and the progress bar. Checking the numbers is `guards`'; writing them is `metric_writer`'s."""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from fwi_jax.metrics import describe
from fwi_jax.training.metric_writer import MetricWriter


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

    def record(self, metrics: dict) -> None:
        """Keep one step's metrics (device arrays) until the window closes."""
        self._pending.append(metrics)

    def take_window(self) -> list[dict[str, float]]:
        """The recorded steps' metrics on the host (one transfer per window), oldest first."""
        window, self._pending = jax.device_get(self._pending), []
        return window

    def train(self, step: int, window: list[dict[str, float]]) -> None:
        """Average a closed window of train metrics (ending at ``step``), add rates, write and show it."""
        now = time.perf_counter()
        rate = (step - self._t_step) / max(now - self._t, 1e-9)
        self._t, self._t_step = now, step
        self.train_metrics = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
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
