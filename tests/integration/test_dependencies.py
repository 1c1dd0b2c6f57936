"""Every third-party module the code imports is a declared dependency: `src/` imports only what
`[project] dependencies` names, tests also what the `test` extra names, and the client distribution
(`client/src`) only what `client/pyproject.toml` names. An undeclared import works by luck (some other
package pulls it in) until an upstream release drops it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"decode_userapi", "decode_cloud", "tests", "__future__"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(pyproject: str, *groups: str) -> set[str]:
    project = tomllib.loads((ROOT / pyproject).read_text())["project"]
    requirements = list(project["dependencies"])
    for group in groups:
        requirements += project["optional-dependencies"][group]
    return {_normalize(re.match(r"[A-Za-z0-9_.-]+", r)[0]) for r in requirements}  # type: ignore[index]


def _imported(folder: str) -> dict[str, str]:
    """Top-level third-party module -> one file that imports it (absolute imports, at any depth)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize(
    ("folder", "pyproject", "groups"),
    [("src", "pyproject.toml", ()), ("tests", "pyproject.toml", ("test",)), ("client/src", "client/pyproject.toml", ())],
)
def test_every_imported_module_is_declared(folder: str, pyproject: str, groups: tuple[str, ...]) -> None:
    declared = _declared(pyproject, *groups)
    providers = packages_distributions()
    undeclared = {
        module: (where, providers.get(module, ["not installed"]))
        for module, where in _imported(folder).items()
        if not declared & {_normalize(d) for d in providers.get(module, [])}
    }
    assert not undeclared, f"imported but not declared in pyproject.toml (module: file, distributions): {undeclared}"
