"""The app role's filter files: each filter the roles and playbooks use is registered once, and none goes unused.

The filters live in one file per concern (inputs, releases, restarts, secrets); a name dropped in a move between files
would only fail at run time, on a host, in the task that needs it.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter

from tests.conftest import APP_FILTER_FILES, COLLECTION, REPO

# A filter applied in Jinja: `| wsgiops.meinheld_gunicorn.NAME`, possibly at the start of a continued line.
USE_RE = re.compile(r"\|\s*wsgiops\.meinheld_gunicorn\.(\w+)")
WHERE = ("roles", "playbooks", "molecule", "packer")


def registered() -> Counter[str]:
    names: Counter[str] = Counter()
    for name in APP_FILTER_FILES:
        module = importlib.import_module(f"{COLLECTION}.plugins.filter.{name}")
        names.update(list(module.FilterModule().filters()))
    return names


def used() -> set[str]:
    found: set[str] = set()
    for where in WHERE:
        for path in (REPO / where).rglob("*"):
            if path.suffix in (".yml", ".yaml", ".j2", ".hcl") and path.is_file():
                found.update(USE_RE.findall(path.read_text(errors="replace")))
    return found


def test_each_filter_is_registered_by_one_file() -> None:
    assert [name for name, count in registered().items() if count > 1] == []


def test_every_filter_used_is_registered() -> None:
    assert sorted(used() - set(registered())) == []


def test_every_filter_registered_is_used() -> None:
    assert sorted(set(registered()) - used()) == []
