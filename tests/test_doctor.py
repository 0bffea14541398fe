"""`python -m fwi_jax.doctor`: verdicts on a ready and a broken setup, the device report, and the
dependency check against fwi_jax's own floors."""

import importlib.metadata

import pytest

from fwi_jax import doctor


@pytest.mark.floors
def test_doctor_verdicts_and_device_report(tmp_path, capsys):
    assert doctor.main(["--workdir", str(tmp_path / "run")]) == 0
    assert not (tmp_path / "run").exists()  # checked, not created
    out = capsys.readouterr().out
    assert "backend: cpu with 8 device(s)" in out and "verdict: READY" in out
    assert "GiB (host RAM" in out and "bfloat16: " in out
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert doctor.main(["--workdir", str(blocker / "run"), "--data-root", str(tmp_path / "none")]) == 1
    out = capsys.readouterr().out
    assert "FAIL  workdir" in out and "FAIL  data root" in out and "verdict: NOT READY" in out


def test_doctor_names_each_missing_or_old_dependency_and_its_fix(monkeypatch, capsys):
    floors = doctor.requirement_floors()
    assert {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "ml-collections"} <= set(floors)
    real = importlib.metadata.version
    fake = {"jax": "0.4.30", "flax": "0.1.0", "tensorboardX": "1.0"}

    def version(name):
        if name in ("grain", "ml-collections"):
            raise importlib.metadata.PackageNotFoundError(name)
        return fake.get(name) or real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    r = doctor.Report()
    doctor.check_versions(r)
    out = capsys.readouterr().out
    assert f"FAIL  jax: 0.4.30 is older than fwi_jax supports ({floors['jax']})" in out
    assert "never a CPU build over it" in out
    assert f"FAIL  flax: 0.1.0 is older than fwi_jax supports: pip install 'flax>={floors['flax']}'" in out
    assert f"FAIL  ml-collections: not installed: pip install 'ml-collections>={floors['ml-collections']}'" in out
    assert "warn  grain: not installed; only needed for data.placement=host" in out
    assert "warn  tensorboardX: 1.0 is older" in out
    assert set(r.problems) == {"jax", "flax", "ml-collections"}


class FakeDevice:
    def __init__(self, platform, kind, cc=None, limit=None):
        self.platform, self.device_kind, self.compute_capability, self._limit = platform, kind, cc, limit

    def memory_stats(self):
        return {"bytes_limit": self._limit, "bytes_in_use": 0} if self._limit else None


def test_device_facts_as_an_accelerator_reports_them():
    """What the doctor and benchmarks/accelerator.py say about devices this CPU-only CI never sees."""
    from fwi_jax.device_facts import describe

    h200 = describe([FakeDevice("gpu", "NVIDIA H200", "9.0", 141 * 2**30)])
    assert (h200.bf16_native, h200.bf16_peak_tflops, h200.memory_text()) == (True, 989.0, "141.0 GiB")
    v100 = describe([FakeDevice("gpu", "Tesla V100-SXM2-16GB", "7.0", 16 * 2**30)] * 2)
    assert not v100.bf16_native and "train in float32" in v100.bf16_note and v100.count == 2
    assert v100.bf16_peak_tflops is None
    tpu = describe([FakeDevice("tpu", "TPU v5 lite")])
    assert tpu.bf16_native and tpu.bf16_peak_tflops == 197.0 and tpu.memory_text() == "unknown"
    assert describe([FakeDevice("gpu", "NVIDIA H100 PCIe", "9.0")]).bf16_peak_tflops == 756.0
    cpu = describe([FakeDevice("cpu", "cpu")])
    assert cpu.memory_bytes > 0 and cpu.bf16_peak_tflops is None and "float32" in cpu.bf16_note
