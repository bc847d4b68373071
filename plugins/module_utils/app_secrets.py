"""The app list's secrets: looked up inside no_log tasks only, stripped from URLs, redacted from what is shown."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from ansible_collections.wsgiops.meinheld_gunicorn.plugins.module_utils.app_layout import env_text


def app_secret_env(apps: list[Mapping[str, Any]], name: str) -> dict[str, str]:
    """The secret_env of the app NAME of the operator's app list, as the env file writes it; for no_log tasks only."""
    for app in apps or []:
        if isinstance(app, Mapping) and app.get("name") == name:
            return {str(key): env_text(value) for key, value in (app.get("secret_env") or {}).items()}
    return {}


def app_redact(text: str, apps: list[Mapping[str, Any]]) -> str:
    """The text with every secret_env value of the app list replaced by ***.

    For what the role shows on a failure (the launcher's words, the journal's last lines), which the app itself may
    have filled with its secrets.
    """
    for app in apps or []:
        if isinstance(app, Mapping):
            for value in sorted(app_secret_env(apps, str(app.get("name"))).values(), key=len, reverse=True):
                if value:
                    text = text.replace(value, "***")
    return text


def app_repo_public(url: Any) -> str:
    """The repository URL without credentials: https://user:token@host/x.git -> https://host/x.git.

    git stores the URL a clone was made from in .git/config, in the app's directory; with the credentials in it, the
    app's own user (and anything reading the clone) could read the token. Only http(s) URLs carry a password there;
    an ssh or scp-like URL (git@host:org/x.git) names a user, no secret, and stays as it is.
    """
    text = str(url)
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return text
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def app_git_environment(apps: list[Mapping[str, Any]], name: str) -> dict[str, str]:
    """For a no_log git task of the app NAME: git's environment that gives it the credentials of the repo URL.

    The clone is made from the public URL (app_repo_public: the normalised item's repo, what .git/config keeps);
    this environment tells git, for this run only, to fetch that URL through the one with credentials
    (url.<with credentials>.insteadOf = <public>, as GIT_CONFIG_COUNT/KEY/VALUE, git >= 2.31). Looked up from the
    operator's app_list, like secret_env, so the token never enters a loop item or a fact. Empty when the URL has no
    credentials.
    """
    for app in apps or []:
        if isinstance(app, Mapping) and app.get("name") == name and app.get("repo"):
            repo = str(app["repo"])
            public = app_repo_public(repo)
            if public != repo:
                return {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": f"url.{repo}.insteadOf",
                    "GIT_CONFIG_VALUE_0": public,
                }
    return {}
