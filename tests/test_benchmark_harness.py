"""The benchmark harness (benchmarks/_harness.py, _sidecar.py): one ratio, one table, one results
format, one sidecar protocol; the sidecar module stays importable without JAX; no benchmark
imports another benchmark script."""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _harness  # noqa: E402
from _sidecar import Sidecar  # noqa: E402


def test_ratio_is_the_median_of_per_round_ratios_with_their_range():
    # The machine is 2x slower in the middle round: both sides feel it, the per-round ratio does not.
    ours, theirs = [1.0, 2.2, 1.1], [2.0, 4.0, 2.0]
    r = _harness.Ratio.of(ours, theirs)
    assert r.per_round == pytest.approx((0.5, 0.55, 0.55))
    assert (r.median, r.min, r.max) == pytest.approx((0.55, 0.5, 0.55))
    assert r.fields("x") == {"x": r.median, "ratio_min": r.min, "ratio_max": r.max}
    # A round of several timings counts as their median.
    assert _harness.Ratio.of([[1.0, 3.0, 2.0]], [4.0]).median == pytest.approx(0.5)
    with pytest.raises(ValueError):
        _harness.Ratio.of([1.0], [1.0, 2.0])


def test_alternate_calls_every_side_once_per_round_in_order():
    calls = []
    out = _harness.alternate({"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2}, 2, quiet=True)
    assert calls == ["a", "b", "a", "b"]
    assert out == {"a": [1, 1], "b": [2, 2]}


def test_table_prints_missing_values_as_a_dash_and_aligns_its_columns():
    rows = [{"name": "x", "s": 1.23456, "ratio": 1.5, "ratio_min": 1.2, "ratio_max": 1.8}, {"name": "longer name"}]
    cols = ["name", _harness.Col("s/call", "s", "{:.2f}"), _harness.ratio_col("vs other")]
    lines = _harness.table_lines(rows, cols)
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["name", "s/call", "vs other"]
    assert set(lines[1]) == {"|", "-"}
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["x", "1.23", "1.50x (1.20-1.80)"]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["longer name", "-", "-"]
    assert len({len(line) for line in lines}) == 1


def test_results_carry_the_common_metadata_and_the_table(tmp_path, capsys):
    import argparse

    import jax  # noqa: F401  (imported: the facts come from this process, not a child)

    path = _harness.write_results(tmp_path / "r.json", {"rows": [1]}, ["| a |"], args=argparse.Namespace(n=2))
    report = json.loads(path.read_text())
    meta = report["meta"]
    for key in ("date", "git_commit", "command", "machine", "device_kind", "device_count", "backend", "jax"):
        assert key in meta
    assert meta["args"] == {"n": 2} and meta["backend"] == "cpu" and meta["device_count"] >= 1
    assert {"cpu_model", "cpu_count", "isa", "platform"} <= meta["machine"].keys()
    assert set(meta["machine"]["isa"]) <= set(_harness.ISA_FLAGS)
    assert report["rows"] == [1] and report["table"] == ["| a |"]
    assert _harness.read_table(path) == ["| a |"]
    assert _harness.read_table(tmp_path / "missing.json") is None


SERVER = """
from _sidecar import serve

def fail(msg):
    raise ValueError("broken on purpose")

serve({"echo": lambda msg: {"got": msg["x"]}, "fail": fail}, stamp={"side": "test"})
"""


def test_sidecar_protocol_round_trip_and_errors(tmp_path, monkeypatch):
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(SERVER))
    monkeypatch.setenv("PYTHONPATH", str(BENCH))
    with Sidecar(script, python=sys.executable) as side:
        assert side.ask("echo", x=3) == {"got": 3, "side": "test"}
        with pytest.raises(RuntimeError, match="broken on purpose"):
            side.ask("fail")
        with pytest.raises(RuntimeError, match="unknown command"):
            side.ask("nope")
        assert side.ask("echo", x="still alive")["got"] == "still alive"
    assert side.proc.poll() == 0


def test_the_sidecar_module_imports_neither_jax_nor_fwi_jax():
    """The PyTorch interpreter that runs the sidecars has only torch and numpy."""
    code = (
        "import sys; import _sidecar; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'fwi_jax', 'flax')]; "
        "assert not bad, bad"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", code], cwd=BENCH, env=env, check=True)


def test_no_benchmark_imports_another_benchmark_script():
    scripts = {p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_")}
    found = []
    for path in BENCH.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            found += [f"{path.name} imports {n}" for n in names if n.split(".")[0] in scripts]
    assert not found, found


@pytest.mark.slow
def test_accelerator_quick_runs_every_part_and_reports_as_it_goes(tmp_path):
    """`benchmarks/accelerator.py --quick`, the CPU check of the one command for an accelerator slot:
    every part runs shrunk and leaves its table in the summary; PyTorch joins through its sidecar when
    one is set up (.ci/run's), else the step table says why it was skipped."""
    from fwi_jax import torchenv

    # One CPU device, as a user's machine has (the parts choose their own device counts); no huge-pages
    # restart of every part. The budget only bounds a hang: --quick parts are capped by their sizes (~2 min
    # alone here), and a slow or busy CI machine must not time a part out.
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "").strip()
    env = dict(os.environ, XLA_FLAGS=flags, FWI_JAX_HUGEPAGES="0")
    cmd = [sys.executable, str(BENCH / "accelerator.py"), "--quick", "--budget-s", "1500", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "accelerator.json").read_text())
    parts = ["step_time", "timed_reproduction", "train_throughput", "generation", "gradient"]
    assert [p["part"] for p in summary["parts"]] == parts
    assert all(p["status"] == "ok" and p["table"] for p in summary["parts"]), summary["parts"]
    md = (tmp_path / "accelerator.md").read_text()
    assert all(f"## {p}: ok" in md for p in parts)
    steps = json.loads((tmp_path / "step_time.json").read_text())
    if torchenv.torch_python() is None:
        assert "skipped" in steps["torch_skipped"] and "skipped" in md
    else:
        assert steps["torch_skipped"] is None and all(r["torch_s"] > 0 for r in steps["rows"])
    (row,) = json.loads((tmp_path / "timed_reproduction.json").read_text())["rows"]
    assert row["train_samples"] > 0 and row["epochs"] >= 1 and 0 < row["ssim"] <= 1
