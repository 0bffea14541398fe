"""Two CPU processes on localhost (JAX's distributed runtime, 4 devices each) train like one process
with 8 devices on the same global batches: same losses, same parameters, a checkpoint both wrote."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from fwi_jax import parallel
from fwi_jax.checkpointing import Checkpointer
from fwi_jax.config import quickstart_config
from fwi_jax.data.datasets import get_dataset
from fwi_jax.training.steps import make_steps, restore_or_init

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def train_cmd(workdir, cache, *extra):
    return [
        sys.executable,
        "-m",
        "fwi_jax.train",
        "--config",
        str(REPO / "configs" / "quickstart.py") + ":smoke",
        "--workdir",
        str(workdir),
        f"--config.data.cache_dir={cache}",
        "--config.progress=False",
        "--config.num_plot_samples=0",
        "--config.num_train_steps=3",
        "--config.compilation_cache=",
        *extra,
    ]


def env(devices: int) -> dict:
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    e["JAX_PLATFORMS"] = "cpu"
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), e.get("PYTHONPATH")]))
    return e


def losses(workdir):
    rows = [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


def restore_params(workdir):
    config = quickstart_config("smoke")
    steps = make_steps(config, get_dataset("flatvel-a"), parallel.make_mesh())
    ckpt = Checkpointer(workdir, async_save=False)
    state, next_step = restore_or_init(ckpt, steps, init=False)
    ckpt.close()
    return jax.device_get(state.params), {"next_step": next_step}


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["host", "device"])
def test_two_processes_train_like_one(tmp_path, placement):
    cache = tmp_path / "datasets"
    data = [f"--config.data.placement={placement}"]
    single = subprocess.run(train_cmd(tmp_path / "one", cache, *data), env=env(8), capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]

    port = free_port()
    procs = [
        subprocess.Popen(
            train_cmd(
                tmp_path / "two",
                cache,
                "--distributed=explicit",
                f"--coordinator-address=localhost:{port}",  # the dashed alias
                "--num_processes=2",
                f"--process_id={i}",
                *data,
            ),
            env=env(4),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for i, (p, (_, err)) in enumerate(zip(procs, outs, strict=True)):
        (tmp_path / f"process{i}.err").write_text(err)
        first = [line for line in err.splitlines() if "rror" in line or "Fatal" in line or "Check failed" in line]
        assert p.returncode == 0, f"process {i} exited {p.returncode}: {first[:5]}\n{err[:2000]}"
    assert "done at step 3" in outs[0][0] and "done at step" not in outs[1][0]  # process 0 alone reports

    # Step 1 matches to float32 rounding; later losses follow weights that may differ by up to ~lr
    # (see below): measured 1.7e-5 relative at step 3 with the im2col conv forms, 8.1e-4 with the
    # shifted-product forms (a different rounding, amplified as in test_train's 1 vs 8 device test).
    np.testing.assert_allclose(losses(tmp_path / "two")[:1], losses(tmp_path / "one")[:1], rtol=1e-6)
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=3e-3)
    if placement == "device":  # each process loaded its devices' shards; the same global batches (step 1 above)
        return
    one, data_one = restore_params(tmp_path / "one")
    two, data_two = restore_params(tmp_path / "two")
    assert data_one == data_two == {"next_step": 3}
    # Same global batches and the same 8-way mesh; cross-process sums may round differently, and Adam
    # turns a near-zero gradient's rounding into a step of up to lr: compare within 2 lr per step.
    lr = quickstart_config("smoke").optim.lr
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=6 * lr, rtol=0), one, two)
    diffs = np.concatenate(
        [np.abs(a - b).ravel() for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two), strict=True)]
    )
    fractions = {tol: float(np.mean(diffs <= tol)) for tol in (1e-6, 1e-5, lr / 10, lr)}
    # Most parameters within a tenth of one Adam step, nearly all within one (measured 0.835 within a tenth
    # with the shifted-product convs; 0.99 within a tenth with the im2col ones).
    assert fractions[lr / 10] >= 0.5 and fractions[lr] >= 0.99, fractions


def test_distributed_flags_are_checked():
    from fwi_jax import distributed

    with pytest.raises(ValueError, match="needs --coordinator --num_processes --process_id"):
        distributed.initialize("explicit")
    with pytest.raises(ValueError, match=r"--process_id 2 must be in \[0, 2\)"):
        distributed.initialize("explicit", "localhost:1234", 2, 2)
    assert distributed.initialize("off") is False
