"""Full-waveform inversion (FWI) of OpenFWI-layout seismic data with fwi_jax's acoustic solver.

    python -m fwi_jax.invert --input seis.npy --init predict:runs/quickstart --out vel.npy [--truth model.npy]

Input: (N, 5, 1000, 70) raw pressure, OpenFWI's geometry and 15 Hz Ricker source (any N; one
(5, 1000, 70) sample works too). ``--init`` is the starting model:
``predict:WORKDIR`` (a trained network's prediction, ``predict:WORKDIR@latest`` for another
checkpoint), ``file:VEL.npy`` ((N, 1, 70, 70), (N, 70, 70) or one (70, 70) map, m/s),
``linear:V_TOP,V_BOTTOM`` (a 1D gradient) or ``constant:V``.

Samples are inverted in batches (``--batch-size``), each through frequency stages
(``--frequencies 5,10,full``: low-pass cutoffs in Hz) of ``--iterations`` optimizer iterations.
Outputs: ``--out`` (N, 1, 70, 70) m/s, written only when complete; ``OUT.json`` with the
settings, the misfit per iteration and per sample (relative: 1.0 = as far as zero data), and
MAE / RMSE / SSIM (the reference metrics) per iteration when ``--truth`` is given; pictures
(start | FWI result | truth | error) in ``OUT_pictures/``. An interrupted run keeps its finished
stages in ``OUT.partial/``: rerun the same command to resume from there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from fwi_jax import inference, viz
from fwi_jax.cli import ArgumentParser
from fwi_jax.cpu_runtime import use_all_cpu_cores
from fwi_jax.data.sources import map_npy
from fwi_jax.fileio import atomic_path, atomic_write_text, check_output_file
from fwi_jax.physics import inversion, openfwi_geometry
from fwi_jax.physics.inversion import FWISettings
from fwi_jax.predict import open_input, predict_velocities

SEISMIC_SHAPE = (5, 1000, 70)
MODEL_SHAPE = (70, 70)
METRICS = ("mae_ms", "rmse_ms", "ssim")
INIT_FORMS = "predict:WORKDIR[@best|@latest|@STEP], file:VEL.npy, linear:V_TOP,V_BOTTOM or constant:V"


def parse_frequencies(text: str) -> tuple[float, ...]:
    """'5,10,full' -> (5.0, 10.0, 0.0): one low-pass cutoff per stage, 0 = the full band."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            out.append(0.0 if part in ("full", "0") else float(part))
        except ValueError:
            raise ValueError(f"--frequencies takes cutoffs in Hz or 'full', e.g. 5,10,full; got {text!r}") from None
    return tuple(out)


def read_models(path: str | Path, n: int, what: str) -> np.ndarray:
    """(n, 70, 70) float32 m/s from a .npy of (n, 1, 70, 70), (n, 70, 70) or one (70, 70) map."""
    m = np.asarray(map_npy(Path(path), fix=f"pass a velocity .npy as {what}"), np.float32)
    if m.shape == MODEL_SHAPE:
        m = np.broadcast_to(m, (n, *MODEL_SHAPE))
    elif m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.shape != (n, *MODEL_SHAPE):
        raise ValueError(f"{path} has shape {m.shape}; {what} needs ({n}, 1, 70, 70), ({n}, 70, 70) or (70, 70) m/s")
    if not np.all(np.isfinite(m)) or m.min() <= 0:
        raise ValueError(f"{path}: {what} must hold finite, positive velocities (m/s)")
    return np.ascontiguousarray(m)


def initial_models(init: str, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The (N, 70, 70) starting models and, for a prediction, the network's velocity range."""
    kind, _, arg = init.partition(":")
    n, (nz, nx) = len(x), MODEL_SHAPE
    try:
        if kind == "constant":
            return np.full((n, nz, nx), float(arg), np.float32), None
        if kind == "linear":
            top, bottom = (float(a) for a in arg.split(","))
            column = np.linspace(top, bottom, nz, dtype=np.float32)
            return np.broadcast_to(column[None, :, None], (n, nz, nx)).copy(), None
    except ValueError:
        raise ValueError(f"--init {init!r}: expected {INIT_FORMS}") from None
    if kind == "file" and arg:
        return read_models(arg, n, "--init"), None
    if kind == "predict" and arg:
        workdir, _, which = arg.partition("@")
        trained = inference.load(workdir, which or "best")
        spec = trained.spec
        return predict_velocities(trained, x, batch_size), (spec.label_min, spec.label_max)
    raise ValueError(f"--init {init!r}: expected {INIT_FORMS}")


class Partial:
    """Finished stages of an interrupted run, one .npz per (batch, stage), under OUT.partial/."""

    def __init__(self, out: Path, identity: dict):
        self.dir = out.with_name(out.name + ".partial")
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = self.dir / "identity.json"
        text = json.dumps(identity, sort_keys=True, indent=1)
        if stamp.exists() and stamp.read_text() != text:
            raise ValueError(
                f"{self.dir} holds an interrupted run with other inputs or settings; rerun that command "
                "to resume it, or delete the folder to start over"
            )
        atomic_write_text(stamp, text)

    def latest(self, batch: int, stages: int) -> tuple[int, dict] | None:
        for stage in reversed(range(stages)):
            path = self.dir / f"batch{batch}_stage{stage}.npz"
            if path.exists():
                with np.load(path) as z:
                    return stage, {"v": z["v"], "log": json.loads(str(z["log"]))}
        return None

    def save(self, batch: int, stage: int, v: np.ndarray, log: dict) -> None:
        with atomic_path(self.dir / f"batch{batch}_stage{stage}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, v=v, log=json.dumps(log))

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _identity(input_path, x, init, truth_path, settings, batch_size) -> dict:
    head = np.ascontiguousarray(x[:1]).tobytes()
    return {
        "input": str(Path(input_path).absolute()),
        "samples": len(x),
        "input_head_sha1": hashlib.sha1(head).hexdigest(),
        "init": init,
        "truth": str(truth_path) if truth_path else None,
        "settings": repr(settings),
        "batch_size": batch_size,
    }


def _invert_batch(v0, obs, truth, settings, partial, k, bar) -> tuple[np.ndarray, dict]:
    """One batch through all stages, resuming after its last finished stage."""
    stages = len(settings.frequencies)
    done = partial.latest(k, stages)
    if done is None:
        v, first = v0, 0
        log = {"iterations": [], "stage_misfit": [inversion.full_band_misfit(v0, obs, settings).tolist()]}
        if truth is not None:
            log["start_metrics"] = inversion.velocity_metrics(v0, truth, settings)
    else:
        (stage, state), first = done, done[0] + 1
        v, log = state["v"], state["log"]
        if bar is not None:
            bar.update(first * settings.iterations)

    def tick(rec):
        log["iterations"].append(dataclasses.asdict(rec))
        if bar is not None:
            cut = f"{rec.cutoff_hz:g} Hz" if rec.cutoff_hz else "full band"
            bar.set_postfix_str(f"stage {rec.stage + 1}/{stages} ({cut}), misfit {rec.misfit:.3g}")
            bar.update(1)

    for stage in range(first, stages):
        v, _ = inversion.run_stage(v, obs, settings, stage, truth, tick)
        log["stage_misfit"].append(inversion.full_band_misfit(v, obs, settings).tolist())
        partial.save(k, stage, v, log)
    if truth is not None:
        log["end_metrics"] = inversion.velocity_metrics(v, truth, settings)
    return v, log


def _summary(logs: list[dict], n: int, truth: bool) -> dict:
    start = np.concatenate([lg["stage_misfit"][0] for lg in logs])
    end = np.concatenate([lg["stage_misfit"][-1] for lg in logs])
    out = {
        "misfit_start": float(start.mean()),
        "misfit_end": float(end.mean()),
        "misfit_reduction": float(start.mean() / max(end.mean(), 1e-30)),
        "per_sample": [{"index": i, "misfit_start": float(start[i]), "misfit_end": float(end[i])} for i in range(n)],
    }
    if truth:
        for when in ("start", "end"):
            metrics = {
                k: np.concatenate([lg[f"{when}_metrics"][k] for lg in logs]) for k in ("mae_ms", "rmse_ms", "ssim")
            }
            out[f"{when}_metrics"] = {k: float(m.mean()) for k, m in metrics.items()}
            for i, row in enumerate(out["per_sample"]):
                row.update({f"{k}_{when}": float(m[i]) for k, m in metrics.items()})
    return out


def _pictures(out_path: Path, report: dict, v0, result, truth, settings, count: int) -> Path:
    folder = out_path.with_name(out_path.stem + "_pictures")
    folder.mkdir(exist_ok=True)
    for i in range(min(count, len(result))):
        row = report["per_sample"][i]
        title = f"sample {i}: misfit {row['misfit_start']:.3g} -> {row['misfit_end']:.3g}"
        t = None if truth is None else truth[i]
        viz.save_inversion(folder / f"sample{i:05d}.png", v0[i], result[i, 0], t, settings.vmin, settings.vmax, title)
    return folder


def invert_file(
    input_path: str | Path,
    init: str,
    out_path: str | Path,
    settings,
    truth_path: str | Path | None = None,
    batch_size: int = 8,
    pictures: int = 8,
    progress: bool = True,
) -> dict:
    """Invert every sample of ``input_path``; writes the velocities, OUT.json and pictures."""
    x = open_input(input_path, SEISMIC_SHAPE)
    out_path = Path(out_path).absolute()
    if out_path.suffix != ".npy" or out_path == Path(input_path).absolute():
        raise ValueError("--out must be a .npy path other than --input")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    n = len(x)
    truth = read_models(truth_path, n, "--truth") if truth_path else None
    v0, network_range = initial_models(init, x, batch_size)
    if network_range is not None and settings.vmin == 1500.0 and settings.vmax == 4500.0:
        settings = dataclasses.replace(settings, vmin=network_range[0], vmax=network_range[1])
    v0 = np.clip(v0, settings.vmin, settings.vmax)  # the start FWI sees, and the pictures show
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = Partial(out_path, _identity(input_path, x, init, truth_path, settings, batch_size))
    bar = None
    if progress:
        from tqdm import tqdm

        total = -(-n // batch_size) * len(settings.frequencies) * settings.iterations
        bar = tqdm(total=total, unit="it", desc=f"FWI of {n} sample(s)", dynamic_ncols=True)
    t0 = time.perf_counter()
    result, logs = np.empty((n, 1, *MODEL_SHAPE), np.float32), []
    try:
        for k, start in enumerate(range(0, n, batch_size)):
            sl = slice(start, start + batch_size)
            obs = np.asarray(x[sl], np.float32)
            if not np.all(np.isfinite(obs)):
                bad = start + int(np.argmin(np.isfinite(obs).reshape(len(obs), -1).all(axis=1)))
                raise ValueError(f"{input_path}: sample {bad} holds NaN or inf; fix or drop it")
            v, log = _invert_batch(v0[sl], obs, None if truth is None else truth[sl], settings, partial, k, bar)
            result[sl, 0] = v
            logs.append({"samples": [start, start + len(obs)], **log})
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        np.save(f, result)
    report = {
        "input": str(input_path),
        "init": init,
        "truth": str(truth_path) if truth_path else None,
        "out": str(out_path),
        "samples": n,
        "seconds": seconds,
        "settings": {**dataclasses.asdict(settings), "geometry": "openfwi"},
        **_summary(logs, n, truth is not None),
        "batches": logs,
    }
    json_path = atomic_write_text(out_path.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    folder = _pictures(out_path, report, v0, result, truth, settings, pictures)
    partial.remove()
    return {**report, "json": str(json_path), "pictures": str(folder)}


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m fwi_jax.invert", description=__doc__.split("\n")[0])
    p.add_argument("--input", required=True, help="seismic .npy, (N, 5, 1000, 70) raw pressure")
    p.add_argument("--init", required=True, help=f"starting model: {INIT_FORMS}")
    p.add_argument("--out", required=True, help="velocity .npy to write, (N, 1, 70, 70) m/s")
    p.add_argument("--truth", default=None, help="true velocities (.npy) for MAE / RMSE / SSIM per iteration")
    p.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "adam"))
    p.add_argument("--misfit", default="l2", choices=("l2", "l1"))
    p.add_argument("--iterations", type=int, default=20, help="optimizer iterations per frequency stage")
    p.add_argument("--frequencies", default="5,10,full", help="low-pass cutoff per stage in Hz; 'full' = no filter")
    p.add_argument("--mode", default="fast", choices=("fast", "exact"), help="solver: fast (CPML) or exact (OpenFWI's)")
    p.add_argument("--vmin", type=float, default=1500.0, help="lower velocity bound, m/s (predict: the model's)")
    p.add_argument("--vmax", type=float, default=4500.0, help="upper velocity bound, m/s (predict: the model's)")
    p.add_argument("--lr", type=float, default=20.0, help="Adam's step in m/s per iteration")
    p.add_argument("--layout", default="released", choices=("released", "shifted"), help="acquisition columns")
    p.add_argument("--batch-size", type=int, default=8, help="samples inverted together")
    p.add_argument("--pictures", type=int, default=8, help="pictures of the first N samples")
    a = p.parse_args(argv)
    use_all_cpu_cores()

    try:
        check_output_file(a.out, "--out", inputs=(a.input, a.init, a.truth), example="velocity.npy")
        settings = FWISettings(
            geometry=openfwi_geometry(a.layout), mode=a.mode, misfit=a.misfit, optimizer=a.optimizer,
            iterations=a.iterations, frequencies=parse_frequencies(a.frequencies), vmin=a.vmin, vmax=a.vmax, lr=a.lr,
        )  # fmt: skip
        r = invert_file(a.input, a.init, a.out, settings, a.truth, a.batch_size, a.pictures)
    except (ValueError, FileNotFoundError) as e:
        p.exit(2, f"error: {e}\n")
    except KeyboardInterrupt:
        p.exit(130, f"interrupted; finished stages are kept in {a.out}.partial: rerun the same command to resume\n")
    line = f"wrote {r['samples']} velocity map(s) to {r['out']} in {r['seconds']:.0f} s; misfit "
    line += f"{r['misfit_start']:.3g} -> {r['misfit_end']:.3g} ({r['misfit_reduction']:.1f}x lower)"
    if "end_metrics" in r:
        s, e = r["start_metrics"], r["end_metrics"]
        line += f"; MAE {s['mae_ms']:.1f} -> {e['mae_ms']:.1f} m/s, SSIM {s['ssim']:.3f} -> {e['ssim']:.3f}"
    print(line + f"\nreport: {r['json']}, pictures: {r['pictures']}")


if __name__ == "__main__":
    from fwi_jax.cpu_runtime import use_transparent_hugepages

    use_transparent_hugepages()
    main()
