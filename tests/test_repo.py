"""The README's commands stay true: CI runs exactly the README's test command."""

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

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


def test_every_flag_takes_dashes_or_underscores():
    from fwi_jax.cli import ArgumentParser

    p = ArgumentParser()
    p.add_argument("--data-root")
    sub = p.add_subparsers(dest="cmd").add_parser("export")
    sub.add_argument("--batch-size", type=int)
    for spelling in ("--data-root", "--data_root"):
        assert p.parse_args([spelling, "x"]).data_root == "x"
    assert p.parse_args(["export", "--batch_size", "3"]).batch_size == 3


def test_no_module_or_function_grows_past_the_size_limits():
    """One concern per file: modules under ~400 lines, functions under ~80 (architecture issue)."""
    import ast

    too_long = []
    for path in sorted((REPO / "fwi_jax").rglob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) > 400:
            too_long.append(f"{path.name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 80:
                too_long.append(f"{path.name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


def _fwi_jax_imports():
    """(importer, imported, enclosing function or None) for every import of an fwi_jax module in fwi_jax/,
    module-level and function-local, resolved to the module a name comes from."""
    import ast

    modules = {}
    for path in (REPO / "fwi_jax").rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    found = []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        enclosing = {}
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    enclosing.setdefault(id(node), fn.name)  # outermost function first
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith("fwi_jax") else None
                if target and target != module:
                    found.append((module, target, enclosing.get(id(node))))
    return found


# Function-local imports of fwi_jax modules, each with its reason. Nothing else may import inside a function.
LOCAL_IMPORT_REASONS = {
    ("fwi_jax.train", "main"): "the huge-pages re-exec in __main__ must run before JAX is imported",
}


def test_fwi_jax_has_no_import_cycles_and_no_unexplained_function_local_imports():
    edges = {}
    for importer, imported, _ in _fwi_jax_imports():
        edges.setdefault(importer, set()).add(imported)
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles
    local = sorted({(m, f) for m, _, f in _fwi_jax_imports() if f is not None} - set(LOCAL_IMPORT_REASONS))
    assert not local, f"function-local imports without a documented reason: {local}"


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#")[0]
            if path and not re.match(r"[a-z]+:", path) and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_library_code_leaves_jax_global_config_alone():
    """Only entry points (a `main` or a __main__ block) change JAX's global settings."""
    import ast

    offenders = []
    for path in sorted((REPO / "fwi_jax").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef) and fn.name not in ("main", "use_compilation_cache", "initialize"):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Attribute) and node.attr == "update" and "jax.config" in ast.unparse(node):
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno} in {fn.name}")
    assert not offenders, offenders


# The JAX a current CUDA image ships (jax / jaxlib 0.11.2 with the CUDA 13 plugin): pip must keep it.
IMAGE_JAX = "0.11.2"


@pytest.mark.floors
def test_pip_install_keeps_an_installed_jax_and_every_dependency_has_a_floor():
    """`pip install -e .` on an image with JAX never replaces it: fwi_jax asks jax / jaxlib for floors
    only (no pin, no cap, no extra that pulls a CPU build), and the image's version satisfies them.
    Checked on the installed package's metadata, which must match pyproject.toml."""
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name.lower(): Requirement(r) for r in project["dependencies"]}
    installed = {
        Requirement(r).name.lower(): Requirement(r)
        for r in importlib.metadata.requires("fwi_jax")
        if "extra ==" not in r
    }
    assert {k: str(v.specifier) for k, v in installed.items()} == {k: str(v.specifier) for k, v in declared.items()}, (
        "the installed metadata is stale: pip install -e . again"
    )
    for name in ("jax", "jaxlib"):
        req = declared[name]
        assert not req.extras and req.marker is None, req
        assert {s.operator for s in req.specifier} == {">="}, f"{req}: a floor only, never a pin or a cap"
        assert req.specifier.contains(IMAGE_JAX), f"{req} would replace the image's JAX {IMAGE_JAX}"
    assert not any(n.startswith(("jax-cuda", "jax_cuda", "libtpu")) for n in declared), "never a backend plugin"
    for req in declared.values():
        assert [s.operator for s in req.specifier] == [">="], f"{req}: every dependency has one floor (.ci/floors.py)"
