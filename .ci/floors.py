"""Print pip pins at the floor of every dependency in pyproject.toml (`name>=X` becomes `name==X`).

    python3 .ci/floors.py > floors.txt && pip install -c floors.txt -e . pytest

CI installs these in a second venv and runs the tests marked `floors` there, so the lower bounds
written in pyproject.toml are the versions that were tested, not guesses.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def floor_pins(pyproject: Path = PYPROJECT) -> list[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = []
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9.]*)", dep.strip())
        if m is None:
            sys.exit(f"{pyproject}: dependency {dep!r} is not 'name>=version'; every dependency needs a floor")
        pins.append(f"{m[1]}=={m[2]}")
    return pins


if __name__ == "__main__":
    print("\n".join(floor_pins()))
