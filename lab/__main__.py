"""Entry point so that `python -m lab ...` works from the repository root."""

from lab.cli import main

raise SystemExit(main())
