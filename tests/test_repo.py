"""The README's commands stay true: CI runs exactly the README's test command."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [b.strip() for b in blocks]


def test_ci_runs_the_readme_test_command():
    test_cmd = next(c for c in readme_commands() if "pytest" in c)
    assert test_cmd in (REPO / ".ci" / "run").read_text()


def test_readme_quickstart_trains():
    main_cmd = readme_commands()[0]
    assert "pip install" in main_cmd and "python -m fwi_jax.train" in main_cmd
    assert "--config configs/quickstart.py" in main_cmd
