"""Every plugin's DOCUMENTATION, EXAMPLES and RETURN are YAML that parses: ansible-doc and Galaxy read them, and
ansible-lint only warns ("Unable to parse documentation") where this fails."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PLUGINS = sorted(p for p in (REPO / "plugins").glob("*/*.py") if p.name != "__init__.py")
BLOCKS = ("DOCUMENTATION", "EXAMPLES", "RETURN")


def doc_blocks(path: Path) -> dict[str, str]:
    """The module-level string constants named in BLOCKS, read without importing the plugin."""
    tree = ast.parse(path.read_text())
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id in BLOCKS
    }


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_documentation_parses(path: Path) -> None:
    for name, text in doc_blocks(path).items():
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as error:
            pytest.fail(f"{path.relative_to(REPO)}: {name} is not YAML: {error}")


def test_the_modules_and_lookups_are_documented() -> None:
    documented = [p for p in PLUGINS if p.parent.name in ("modules", "lookup") and "DOCUMENTATION" in doc_blocks(p)]
    assert len(documented) == len([p for p in PLUGINS if p.parent.name in ("modules", "lookup")])
