"""Filters of the app role's secrets: for no_log tasks (the values) and for what a failure shows (redacted)."""

from __future__ import annotations

from typing import Any

from ansible_collections.wsgiops.meinheld_gunicorn.plugins.module_utils.app_secrets import (
    app_git_environment,
    app_redact,
    app_secret_env,
)


class FilterModule:
    """The secrets of the app list."""

    def filters(self) -> dict[str, Any]:
        """Map filter names to functions."""
        return {
            "app_secret_env": app_secret_env,
            "app_redact": app_redact,
            "app_git_environment": app_git_environment,
        }
