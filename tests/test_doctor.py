"""`python -m fwi_jax.doctor`: verdicts on a ready and a broken setup."""

from fwi_jax import doctor


def test_doctor_verdicts(tmp_path, capsys):
    assert doctor.main(["--workdir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "backend: cpu with 8 device(s)" in out and "verdict: READY" in out
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert doctor.main(["--workdir", str(blocker / "run"), "--data-root", str(tmp_path / "none")]) == 1
    out = capsys.readouterr().out
    assert "FAIL  workdir" in out and "FAIL  data root" in out and "verdict: NOT READY" in out
