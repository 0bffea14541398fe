"""Every file a command reads fails cleanly: one message naming the file and what is wrong, nothing written."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import smoke_config

from fwi_jax import inference, torch_port, torchenv
from fwi_jax.data.datasets import get_dataset
from fwi_jax.data.sources import OpenFWISource
from fwi_jax.predict import open_input
from fwi_jax.training.loop import train_and_evaluate

REPO = Path(__file__).resolve().parents[1]
SPEC = get_dataset("flatvel-a")
GOOD = np.zeros((2, 5, 1000, 70), np.float32)


def _truncated(p):
    np.save(p, GOOD)
    p.write_bytes(p.read_bytes()[:5000])


NPY_CASES = {
    "empty": (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    "truncated": (_truncated, r"is not a readable .npy file \(it is truncated\)"),
    "pickled": (
        lambda p: np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
        r"holds pickled Python objects .*it is never unpickled",
    ),
    "garbage": (lambda p: p.write_bytes(b"not a NumPy file\n" * 200), r"is not a readable .npy file"),
    "directory": (lambda p: p.mkdir(), r"is a directory, not a .npy file"),
    "shape": (lambda p: np.save(p, np.zeros((2, 5, 999, 70), np.float32)), r"has shape \(2, 5, 999, 70\)"),
    "dtype": (lambda p: np.save(p, GOOD.astype(np.int32)), r"has dtype int32"),
}


@pytest.mark.parametrize("case", sorted(NPY_CASES))
@pytest.mark.parametrize("reader", ["training data", "predict --input"])
def test_bad_npy_files_are_named(tmp_path, case, reader):
    make, message = NPY_CASES[case]
    path = tmp_path / f"{case}.npy"
    make(path)
    read = (
        (lambda: OpenFWISource([(path, path)], SPEC))
        if reader == "training data"
        else (lambda: open_input(path, SPEC.seismic_shape))
    )
    with pytest.raises(ValueError, match=rf"{path}.*{message}|{message}"):
        read()


@pytest.mark.parametrize(
    "source, message",
    [
        ("def get_config(:\n", r"error: .*bad.py:1: syntax error in the config file: invalid syntax"),
        (
            "def get_config(arg=None):\n    return 1 / 0\n",
            r"error: the config .*bad.py failed to load: ZeroDivisionError",
        ),
    ],
)
def test_broken_config_files_are_one_line_errors(tmp_path, source, message):
    config = tmp_path / "bad.py"
    config.write_text(source)
    env = dict(os.environ, PYTHONPATH=str(REPO), FWI_JAX_HUGEPAGES="0")
    cmd = [sys.executable, "-m", "fwi_jax.train", "--config", str(config), "--workdir", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and re.search(message, proc.stderr)
    assert not (tmp_path / "run").exists()


def test_a_corrupt_checkpoint_is_named_for_inference_and_resume(trained_run, cache_dir, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained_run[0], workdir)
    for f in (workdir / "checkpoints" / "4" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 16)  # a damaged disk or an interrupted copy
    unreadable = r"the checkpoint of step 4 in .*checkpoints is unreadable \(.*\); remove the folder .*checkpoints/4"
    with pytest.raises(ValueError, match=unreadable):
        inference.load(workdir, "latest")
    with pytest.raises(ValueError, match=unreadable):
        train_and_evaluate(smoke_config(cache_dir, num_epochs=3), workdir)


@pytest.mark.torch
@pytest.mark.skipif(torchenv.torch_python() is None, reason="needs torch in-process or FWI_JAX_TORCH_PYTHON")
def test_bad_pth_files_are_named_and_import_writes_nothing(tmp_path, capsys):
    script = (
        "import sys, torch\n"
        "class Code:\n    def __reduce__(self):\n        return (print, ('ran pickled code',))\n"
        "torch.save({'w': torch.zeros(3)}, sys.argv[1] + '/good.pth')\n"
        "torch.save({'w': Code()}, sys.argv[1] + '/code.pth')\n"
    )
    proc = subprocess.run([torchenv.torch_python(), "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "garbage.pth").write_bytes(b"not a PyTorch file\n" * 150)
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "good.pth").read_bytes()[:200])
    (tmp_path / "folder.pth").mkdir()
    for name, reason in [
        ("empty", r"\(empty\)"),
        ("garbage", r"\(\w+Error: "),
        ("truncated", r"\(RuntimeError: PytorchStreamReader"),
        ("code", r"\(UnpicklingError: Weights only load failed"),
        ("folder", r"\(a directory\)"),
    ]:
        with pytest.raises(ValueError, match=rf"{name}.pth is not a readable PyTorch weights file {reason}"):
            torch_port.load_pth(tmp_path / f"{name}.pth")
    with pytest.raises(SystemExit):
        torch_port.main(
            ["import", str(tmp_path / "code.pth"), "--dataset", "flatvel-a", "--workdir", str(tmp_path / "w")]
        )
    err = capsys.readouterr()
    assert "is not a readable PyTorch weights file" in err.err and "ran pickled code" not in err.out + err.err
    assert not (tmp_path / "w").exists()
