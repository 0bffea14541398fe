"""What fine-tuning buys: a pretrained model fine-tuned on a few samples of new geology, against training
from scratch on them and against no fine-tuning, scored on the same held-out samples.

    python -m fwi_jax.train --config configs/quickstart.py --workdir runs/quickstart     # the source, once
    python benchmarks/finetune.py [--source runs/quickstart] [--steps 320] [--work DIR] [--out FILE]
    python benchmarks/finetune.py --steps 16 --work /tmp/ft --out /tmp/ft.json   # a check, ~2 minutes

About 8 minutes at the defaults on a 2-core CPU (three training runs of `configs/finetune.py`).

Rows, all scored by `fwi_jax.evaluate.score` on the recipe's 64 held-out CurveVel-A-like samples
(normalized with CurveVel-A's constants, as the fine-tuned runs see them):
- the source's best checkpoint as it is (no fine-tuning);
- the recipe from scratch (no init_from), same steps;
- the recipe from the source (`--config.init_from=SOURCE`), all parameters trained;
- the same with the encoder frozen (`--config.optim.freeze=encoder`).
Each training row is scored at its last step (the final validation), and its wall time, trainable
parameters and best validation MAE during the run are recorded. Each run's workdir stays in WORK
(default: a temporary folder): rerunning with the same WORK resumes or skips finished runs.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from _harness import prepare_host

prepare_host(__name__)  # first: as `python -m fwi_jax.train` runs

# ruff: noqa: E402
import jax
from _harness import Col, print_table, write_results

from fwi_jax import inference
from fwi_jax.config import finetune_config
from fwi_jax.data.open import open_sources
from fwi_jax.data.transforms import velocity_unit
from fwi_jax.evaluate import score
from fwi_jax.fileio import read_jsonl
from fwi_jax.metrics import summarize
from fwi_jax.training.loop import train_and_evaluate

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "finetune.json"
RUNS = (  # (row, init_from the source?, optim.freeze)
    ("from scratch", False, "none"),
    ("fine-tuned", True, "none"),
    ("fine-tuned, encoder frozen", True, "encoder"),
)


def recipe(steps: int, init_from: str = "", freeze: str = "none"):
    c = finetune_config()
    c.num_train_steps = steps
    c.checkpoint_every_steps = min(c.checkpoint_every_steps, steps)
    c.init_from, c.optim.freeze = init_from, freeze
    c.num_plot_samples = 0
    return c


def scored(trained: inference.Trained, config) -> dict:
    """MAE (normalized and m/s), RMSE, SSIM of ``trained`` on the recipe's held-out samples."""
    _, val, spec = open_sources(config)
    val.spec = spec
    summary = summarize(score(trained, val, config.batch_size, config.data.num_threads), velocity_unit(spec))
    return {k: summary[k] for k in ("mae_norm", "mae_ms", "rmse_ms", "ssim", "samples")}


def train_row(name: str, config, workdir: Path) -> dict:
    start = time.perf_counter()
    summary = train_and_evaluate(config, workdir)
    seconds = time.perf_counter() - start
    records = list(read_jsonl(workdir / "metrics.jsonl"))
    vals = [r["mae_norm"] for r in records if r.get("split") == "val" and "mae_norm" in r]
    init = next((r for r in records if r.get("split") == "init_from"), {})
    row = {"run": name, "steps": summary["step"], "train_s": seconds, "best_val_mae_norm": min(vals, default=None)}
    trained = inference.load(workdir, "latest")
    every = sum(x.size for x in jax.tree.leaves(trained.state.params))  # from scratch: all of them train
    row["trainable_params"] = init.get("trainable_params", every)
    return row | scored(trained, config)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default="runs/quickstart", help="the pretrained workdir (the quickstart's)")
    p.add_argument("--steps", type=int, default=finetune_config().num_train_steps)
    p.add_argument("--work", default=None, help="keep the runs' workdirs here (default: a temporary folder)")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args()
    source = Path(a.source).expanduser().absolute()
    if not (source / "checkpoints").is_dir():
        raise SystemExit(
            f"error: --source {a.source} holds no checkpoints; train it first: "
            f"python -m fwi_jax.train --config configs/quickstart.py --workdir {a.source}"
        )
    rows = [{"run": "no fine-tuning (the source as is)", "steps": 0} | scored(inference.load(source), recipe(a.steps))]
    with tempfile.TemporaryDirectory() if a.work is None else contextlib.nullcontext(a.work) as work:
        for i, (name, pretrained, freeze) in enumerate(RUNS):
            config = recipe(a.steps, str(source) if pretrained else "", freeze)
            rows.append(train_row(name, config, Path(work) / f"run{i}"))
            print_table(rows[-1:], [Col("run", "run"), Col("MAE", "mae_norm", "{:.4f}"), Col("SSIM", "ssim", "{:.4f}")])
    table = print_table(
        rows,
        [
            Col("run", "run"),
            Col("steps", "steps"),
            Col("trained params", "trainable_params", "{:,}"),
            Col("MAE", "mae_norm", "{:.4f}"),
            Col("MAE m/s", "mae_ms", "{:.1f}"),
            Col("RMSE m/s", "rmse_ms", "{:.1f}"),
            Col("SSIM", "ssim", "{:.4f}"),
            Col("train s", "train_s", "{:.0f}"),
        ],
        title=f"fine-tuning {source.name} on 256 CurveVel-A-like samples, scored on 64 held out",
    )
    write_results(a.out, {"source": str(source), "rows": rows}, table=table, args=a)


if __name__ == "__main__":
    main()
