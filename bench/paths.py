"""Where the benchmark reads the repo's runtime files and keeps its venvs, scratch files and results."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES = REPO / "files"
START_PY = FILES / "start.py"
EXAMPLE_APP = REPO / "example_app"
BARE_APP = REPO / "bench" / "apps" / "bare"
SERVER_REQUIREMENTS = REPO / "roles" / "server" / "files" / "requirements.txt"
APP_REQUIREMENTS = REPO / "example_app" / "requirements.txt"
BENCH_REQUIREMENTS = REPO / "bench" / "requirements.txt"
MEINHELD_BUILD = REPO / "meinheld_build"
CACHE = REPO / ".cache" / "bench"
RESULTS = REPO / "bench" / "results"
