"""Physics-guided inversion quality: a trained network's prediction, FWI from a 1D linear start and
FWI from the prediction, at equal iteration budgets, on held-out generated samples.

    python benchmarks/fwi_quality.py --workdir runs/quickstart [--families curvevel-a flatfault-a]
        [--samples 4] [--iterations 10] [--frequencies 5,10,full] [--work <cache root>/fwi_quality]
    python benchmarks/fwi_quality.py --workdir RUN --families flatvel-a --samples 1 --iterations 1 \
        --frequencies full --work /tmp/fq --out /tmp/fq.json --picture /tmp/fq.png   # a check, ~2 min

About 12 minutes at the defaults on a 2-core CPU (two inversions of ~3 min per family), plus the
quickstart run it needs (`python -m fwi_jax.train --config configs/quickstart.py --workdir RUN`).

Data are made by the exact (OpenFWI) scheme and inverted with the fast solver, so the inversion
never uses the operator that made its data (no inverse crime). Each (family, start) inversion is
one `fwi_jax.invert` run whose outputs (data, velocities, reports, per-sample pictures) stay in
WORK/FAMILY/: rerunning skips finished ones and resumes an interrupted one. Prints a table of MAE /
RMSE (m/s), SSIM and the data misfit (relative L2, full band) per family and start, writes
benchmarks/results/fwi_quality.json and docs/fwi_quality.png (one sample per family: truth |
prediction | FWI from linear | FWI from prediction).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _harness import prepare_host

prepare_host(__name__, all_cores=True)  # first: one JAX device per core

# ruff: noqa: E402
import numpy as np
from _harness import Col, print_table, write_results

from fwi_jax import invert
from fwi_jax.data.generate import GenerationSpec, generate_dataset
from fwi_jax.paths import cache_root
from fwi_jax.physics import openfwi_geometry
from fwi_jax.physics.inversion import FWISettings, velocity_metrics

HERE = Path(__file__).resolve().parent
LINEAR = "linear:1500,4500"  # the OpenFWI velocity range, top to bottom
STARTS = ("linear 1D start", "prediction", "FWI from linear 1D", "FWI from prediction")


def _misfit_text(row: dict) -> str:
    misfit = f"{row['misfit']:.3g}" if "misfit" in row else "-"
    return f"{row['misfit_start']:.3g} -> {misfit}" if "misfit_start" in row else misfit


COLUMNS = [
    "family",
    "model",
    Col("MAE (m/s)", "mae_ms", "{:.1f}"),
    Col("RMSE (m/s)", "rmse_ms", "{:.1f}"),
    Col("SSIM", "ssim", "{:.3f}"),
    Col("data misfit", _misfit_text),
]


def held_out(family: str, n: int, seed: int, folder: Path) -> tuple[Path, Path]:
    """Exact-mode seismic and true maps of n samples (a seed no training run of ours uses)."""
    generate_dataset(GenerationSpec(family, n, seed, "exact", n, "released", 0), folder / "data", progress=False)
    seis, vel = folder / "seismic.npy", folder / "truth.npy"
    if not seis.exists():
        np.save(seis, np.load(folder / "data" / "data" / "data1.npy"))
        np.save(vel, np.load(folder / "data" / "model" / "model1.npy"))
    return seis, vel


def run_family(family: str, a, settings: FWISettings, out: Path) -> dict:
    folder = out / family
    folder.mkdir(parents=True, exist_ok=True)
    seis, truth_path = held_out(family, a.samples, a.seed, folder)
    truth = np.load(truth_path)[:, 0]
    rows = {}
    for label, init in (("FWI from linear 1D", LINEAR), ("FWI from prediction", f"predict:{a.workdir}")):
        vel = folder / ("fwi_linear.npy" if init == LINEAR else "fwi_prediction.npy")
        if not vel.with_suffix(".json").exists():
            t = time.perf_counter()
            invert.invert_file(seis, init, vel, settings, truth_path, batch_size=a.samples, pictures=a.samples)
            print(f"{family}: {label} took {time.perf_counter() - t:.0f} s", flush=True)
        report = json.loads(vel.with_suffix(".json").read_text())
        if init != LINEAR:  # the start of this run is the network's prediction
            rows["prediction"] = {**report["start_metrics"], "misfit": report["misfit_start"]}
        rows[label] = {**report["end_metrics"], "misfit": report["misfit_end"], "seconds": report["seconds"]}
        rows[label]["misfit_start"] = report["misfit_start"]
    rows["linear 1D start"] = {**_mean(velocity_metrics(_linear(truth.shape), truth, settings))}
    return rows


def _linear(shape) -> np.ndarray:
    column = np.linspace(1500, 4500, shape[1], dtype=np.float32)
    return np.broadcast_to(column[None, :, None], shape).copy()


def _mean(metrics: dict) -> dict:
    return {k: float(np.mean(v)) for k, v in metrics.items()}


def picture(families: list[str], workdir: str, work: Path, path: Path) -> Path:
    from fwi_jax import inference, viz
    from fwi_jax.predict import predict_velocities

    trained = inference.load(workdir)
    maps = {}
    for family in families:
        folder = work / family
        pred = predict_velocities(trained, np.load(folder / "seismic.npy")[:1])[0]
        maps[family] = [np.load(folder / "truth.npy")[0, 0], pred] + [
            np.load(folder / f"fwi_{start}.npy")[0, 0] for start in ("linear", "prediction")
        ]
    columns = ["truth", "prediction", "FWI from linear 1D", "FWI from prediction"]
    return viz.save_family_grid(path, maps, columns=columns)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="a trained run (the quickstart's) for the predictions")
    p.add_argument("--families", nargs="+", default=["curvevel-a", "flatfault-a"])
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--iterations", type=int, default=10, help="per frequency stage, for both starts")
    p.add_argument("--frequencies", default="5,10,full")
    p.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "adam"))
    p.add_argument("--work", default=str(cache_root() / "fwi_quality"))
    p.add_argument("--out", "--json", dest="out", default=str(HERE / "results" / "fwi_quality.json"))
    p.add_argument("--picture", default=str(HERE.parent / "docs" / "fwi_quality.png"))
    a = p.parse_args()
    settings = FWISettings(geometry=openfwi_geometry(), optimizer=a.optimizer, iterations=a.iterations,
                           frequencies=invert.parse_frequencies(a.frequencies))  # fmt: skip
    work = Path(a.work).expanduser().absolute()
    families = {family: run_family(family, a, settings, work) for family in a.families}
    budget = f"{a.iterations} iterations x {len(settings.frequencies)} stages ({a.frequencies} Hz), {a.optimizer}"
    title = f"{a.samples} held-out samples per family (exact-mode data, fast-mode inversion); {budget}"
    rows = [{"family": family, "model": name, **r[name]} for family, r in families.items() for name in STARTS]
    table = print_table(rows, COLUMNS, title)
    report = {"samples": a.samples, "iterations": a.iterations, "frequencies": a.frequencies,
              "optimizer": a.optimizer, "workdir": str(a.workdir), "families": families}  # fmt: skip
    write_results(a.out, report, table, args=a)
    print(f"wrote {picture(a.families, a.workdir, work, Path(a.picture))}")


if __name__ == "__main__":
    main()
