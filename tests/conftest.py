"""Fixtures shared by every tier: where the repo's runtime files are, and loading them as modules."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
FILES = REPO / "roles" / "server" / "files"  # files/ at the top links here
# The checkout as the collection (collections/ links back to it): the modules import their module_utils the way
# Ansible resolves them, ansible_collections.wsgiops.meinheld_gunicorn.plugins.module_utils.
sys.path.insert(0, str(REPO / "collections"))


def load_module(path: Path, env: dict[str, str] | None = None, name: str | None = None) -> ModuleType:
    """Import a standalone file as a module under a controlled environment.

    name="__config__" loads gunicorn_conf.py the way Gunicorn does (it then resolves the environment on import).
    """
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, env or {}, clear=True):
        spec.loader.exec_module(module)
    return module


# The app role's filter files (one concern each) and the module_utils they share, as Ansible imports them.
COLLECTION = "ansible_collections.wsgiops.meinheld_gunicorn"
APP_FILTER_FILES = ("app_inputs", "app_releases", "app_restarts", "app_secrets")
APP_SHARED = ("app_layout", "app_secrets")


def load_app_filters() -> ModuleType:
    """Every name of the app role's filter files and of what they share, as one module, for tests of pure logic.

    A test reads a filter by the name the role's tasks use, wherever it lives; FilterModule is left out (each file has
    its own; test_filters.py checks what each registers).
    """
    names: dict[str, object] = {}
    for module in [f"plugins.module_utils.{m}" for m in APP_SHARED] + [f"plugins.filter.{f}" for f in APP_FILTER_FILES]:
        loaded = importlib.import_module(f"{COLLECTION}.{module}")
        names.update({k: v for k, v in vars(loaded).items() if not k.startswith("__") and k != "FilterModule"})
    merged = ModuleType("app_filters")
    merged.__dict__.update(names)
    return merged


@pytest.fixture(scope="session")
def conf() -> ModuleType:
    return load_module(FILES / "gunicorn_conf.py")


@pytest.fixture(scope="session")
def start() -> ModuleType:
    return load_module(FILES / "start.py")
