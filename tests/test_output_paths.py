"""Every command's output path, through the same bad cases: a folder where a file is expected, a file
where a folder is expected (the path or a parent), a location that cannot be written, an output that is
also an input. Each ends in one line naming the path and the fix, before any work, writing nothing.
Missing parent folders are created (the one rule, fwi_jax/fileio.py)."""

import importlib
from pathlib import Path

import numpy as np
import pytest

# A read-only place even for root, on Linux (sysfs refuses new files).
READ_ONLY = Path("/sys/fwi_jax_test/out")

FILE_OUT = {  # command module -> argv with {out}; {in} is an input the command reads
    "fwi_jax.predict": ["--workdir", "{w}", "--input", "{in}", "--out", "{out}"],
    "fwi_jax.invert": ["--input", "{in}", "--init", "constant:2500", "--out", "{out}"],
    "fwi_jax.viz": ["velocity", "--input", "{vel}", "--out", "{out}"],
    "fwi_jax.torch_port.cli": ["export", "--workdir", "{w}", "--out", "{out}"],
}
DIR_OUT = {
    "fwi_jax.evaluate": ["--workdir", "{w}", "--out", "{out}"],
    "fwi_jax.data.generate": ["--family", "flatvel-a", "--num", "2", "--out", "{out}"],
    "fwi_jax.data.prepare": ["--dataset", "flatvel-a", "--root", "{w}", "--out", "{out}"],
    "fwi_jax.torch_port.cli": ["import", "{in}", "--dataset", "flatvel-a", "--workdir", "{out}"],
    "fwi_jax.data.tfds_openfwi": ["--dataset", "flatvel-a", "--manual-dir", "{w}", "--data-dir", "{out}"],
}
INPUT_KEY = {"fwi_jax.predict": "in", "fwi_jax.invert": "in", "fwi_jax.viz": "vel", "fwi_jax.evaluate": "w"}


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def run_cli(module: str, argv: list[str], places: dict, capsys) -> str:
    if module == "fwi_jax.data.tfds_openfwi":
        pytest.importorskip("tensorflow_datasets")
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as e:
        main([a.format(**places) for a in argv])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    return line


@pytest.fixture
def places(tmp_path):
    seis, vel = tmp_path / "seis.npy", tmp_path / "vel.npy"
    np.save(seis, np.zeros((1, 5, 1000, 70), np.float32))
    np.save(vel, np.full((1, 1, 70, 70), 3000.0, np.float32))
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    return {"in": str(seis), "vel": str(vel), "w": str(tmp_path / "a_folder")}


def cases(table: dict, kind: str):
    for module, argv in table.items():
        yield pytest.param(module, argv, id=f"{module.split('.')[-1]}-{argv[0] if argv[0][0] != '-' else kind}")


@pytest.mark.parametrize("module, argv", list(cases(FILE_OUT, "file")))
def test_file_outputs_refuse_a_folder_a_file_parent_a_read_only_place_and_an_input(
    module, argv, places, tmp_path, capsys
):
    before = files_under(tmp_path)
    bad = {
        str(tmp_path / "a_folder"): "is a folder; name the file to write inside it (e.g. ",
        str(tmp_path / "a_file" / "x.npy"): "a_file is a file, not a folder; choose another location",
        str(READ_ONLY / "x.npy"): "cannot write in /sys",
    }
    if module in INPUT_KEY:
        bad[places[INPUT_KEY[module]]] = "is also an input of this command; write the output elsewhere"
    for out, expected in bad.items():
        line = run_cli(module, argv, {**places, "out": out}, capsys)
        assert out in line and expected in line, line
    assert files_under(tmp_path) == before  # nothing written, no temporary left


@pytest.mark.parametrize("module, argv", list(cases(DIR_OUT, "dir")))
def test_folder_outputs_refuse_a_file_a_file_parent_a_read_only_place_and_an_input(
    module, argv, places, tmp_path, capsys
):
    before = files_under(tmp_path)
    flag = argv[-2]
    bad = {
        str(tmp_path / "a_file"): f"{flag} {tmp_path / 'a_file'} is a file; name a folder (it is created if missing)",
        str(tmp_path / "a_file" / "sub"): "a_file is a file, not a folder; choose another location",
        str(READ_ONLY): "cannot write in /sys",
    }
    if module in INPUT_KEY:
        bad[places[INPUT_KEY[module]]] = "is also an input of this command; write the output elsewhere"
    for out, expected in bad.items():
        line = run_cli(module, argv, {**places, "out": out}, capsys)
        assert out in line and expected in line, line
    assert files_under(tmp_path) == before


def test_missing_parent_folders_are_created(places, tmp_path, capsys):
    from fwi_jax import viz

    out = tmp_path / "new" / "deeper" / "v.png"
    viz.main(["velocity", "--input", places["vel"], "--out", str(out)])
    assert out.stat().st_size > 1000 and "wrote" in capsys.readouterr().out


def test_a_workdir_that_is_a_file_is_a_clear_error(cache_dir, tmp_path):
    from helpers import smoke_config

    from fwi_jax.training.loop import train_and_evaluate

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"--workdir .*afile is a file; name a folder"):
        train_and_evaluate(smoke_config(cache_dir), tmp_path / "afile")
    with pytest.raises(ValueError, match="cannot write in /sys"):
        train_and_evaluate(smoke_config(cache_dir), READ_ONLY)


def test_a_parent_that_cannot_be_searched_is_a_clear_error(tmp_path, monkeypatch):
    """Path.exists raises PermissionError under a folder without search permission (root ignores
    permissions, so the refusal is simulated)."""
    from fwi_jax import doctor, fileio

    locked = tmp_path / "locked"
    real_exists = Path.exists

    def exists(self, *a, **k):
        if self.is_relative_to(locked) and self != locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self, *a, **k)

    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(ValueError, match=r"--out .*: cannot check .*locked/x/run \(Permission denied\); choose"):
        fileio.check_output_dir(locked / "x" / "run", "--out")
    assert doctor.main(["--workdir", str(locked / "x" / "run")]) == 1  # a FAIL line, not a traceback
