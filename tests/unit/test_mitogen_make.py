"""mk/mitogen.mk: the strategy directory is found when the line runs, so a recipe may create the venv first.

`make demo` creates the venv in an earlier line of its own recipe; make expands a whole recipe before running it, so a
`$(shell ...)` lookup there saw no venv on a fresh machine and handed Ansible an empty plugin path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = """BIN := {venv}/bin
include {repo}/mk/mitogen.mk
t:
\trm -rf {venv} && {python} -c 'import sys, os; os.symlink(sys.prefix, "{venv}")'
\t$(WITH_MITOGEN) sh -c 'echo "$$ANSIBLE_STRATEGY|$$ANSIBLE_STRATEGY_PLUGINS"'
"""


@pytest.mark.parametrize(("mitogen", "expected_strategy"), [("1", "mitogen_linear"), ("0", "")])
def test_strategy_dir_of_a_venv_made_by_the_same_recipe(tmp_path: Path, mitogen: str, expected_strategy: str) -> None:
    venv = tmp_path / "venv"
    makefile = tmp_path / "t.mk"
    makefile.write_text(RECIPE.format(venv=venv, repo=REPO, python=sys.executable))
    done = subprocess.run(
        ["make", "-s", "-f", str(makefile), "t", f"MITOGEN={mitogen}"], capture_output=True, text=True, check=True
    )
    strategy, plugins = done.stdout.strip().splitlines()[-1].split("|")
    assert strategy == expected_strategy
    if expected_strategy:
        assert (Path(plugins) / "mitogen_linear.py").is_file()
    else:
        assert plugins == ""
