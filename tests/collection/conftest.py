"""The verify suite's fixtures (the host under test, the app), for the converge from the installed collection."""

from __future__ import annotations

from tests.verify import conftest as verify

site = verify.site
app = verify.app
