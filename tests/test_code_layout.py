"""The house rules of the code, checked: small files and functions, no import circle, no private name imported
from another module, every package in the wheel."""

import ast
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "item_cli"
ROOT_FILES = sorted(REPO.glob("*_item.py")) + [REPO / "handler.py"]
MAX_FILE_LINES = 400
MAX_ROOT_FILE_LINES = 550  # the Hub remote code: processing_item.py documents every setting it saves
MAX_FUNCTION_LINES = 60


def python_files():
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_files_and_functions_stay_small(path):
    lines = path.read_text().count("\n")
    assert lines <= MAX_FILE_LINES, f"{path.name}: {lines} lines (at most {MAX_FILE_LINES})"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{path.name}:{node.lineno} {node.name}() is {length} lines"


@pytest.mark.parametrize("path", ROOT_FILES, ids=lambda p: p.name)
def test_the_remote_code_files_stay_readable(path):
    assert path.read_text().count("\n") <= MAX_ROOT_FILE_LINES


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names imported) of every import in `path`, relative imports resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found


def test_no_module_imports_a_private_name_from_another():
    offenders = [
        f"{path.relative_to(REPO)} imports {name} from {module}"
        for path in python_files() + ROOT_FILES
        for module, names in _imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__") and module.split(".")[0] in ("item_cli", "item_detector", "")
    ]
    assert offenders == []


def test_no_import_circle_between_item_cli_modules():
    modules = {module_name(path): path for path in python_files()}
    graph = {name: {m for m, _ in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    # A package's __init__ importing its own submodules is how packages work; submodules importing their package
    # back is the circle to avoid.
    state: dict = {}

    def visit(node, trail):
        state[node] = "open"
        for target in graph[node]:
            if state.get(target) == "open":
                cycle = trail[trail.index(target):] + [target]
                if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    raise AssertionError(" -> ".join(cycle))
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_every_package_is_in_the_wheel():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module_name(path.parent / "__init__.py") for path in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, f"missing from pyproject.toml's packages: {sorted(packages - listed)}"


def test_item_cli_logs_instead_of_printing_warnings():
    offenders = [f"{path.relative_to(REPO)}:{number}" for path in python_files()
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"print\(f?[\"'](warning|skipped)", line)]
    assert offenders == []
