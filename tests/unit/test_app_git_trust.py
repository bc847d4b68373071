"""Git sources: signed commits (verify_commit, gpg_whitelist) and credentials kept out of the clone (security review,
findings 9e and 10b).

A token in a git URL (https://user:token@host/...) ends up in the clone's .git/config, which the app's user can read.
The filters give the clone the URL without credentials and give git the credentials for the run only, through its
environment (url.<with credentials>.insteadOf): shown here with real git against an HTTP server that demands them.
"""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import load_app_filters

FPR = "0123456789ABCDEF0123456789ABCDEF01234567"


@pytest.fixture(scope="module")
def filters() -> ModuleType:
    return load_app_filters()


def _git(**fields: object) -> dict[str, object]:
    return {"name": "shop", "repo": "https://git.example.com/org/shop.git", "env": {"MODULE_NAME": "main"}, **fields}


def _errors(filters: ModuleType, app: dict[str, object]) -> list[str]:
    return filters.app_input_errors([app], "/srv")


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("https://ci:s3cret@git.example.com/org/shop.git", "https://git.example.com/org/shop.git"),
        ("https://ghp_token@github.com/org/shop.git", "https://github.com/org/shop.git"),
        ("http://u:p@10.0.0.5:8080/shop.git", "http://10.0.0.5:8080/shop.git"),
        ("https://git.example.com/org/shop.git", "https://git.example.com/org/shop.git"),
        ("git@github.com:org/shop.git", "git@github.com:org/shop.git"),
        ("ssh://git@github.com/org/shop.git", "ssh://git@github.com/org/shop.git"),
    ],
)
def test_the_public_url_has_no_credentials(filters: ModuleType, url: str, public: str) -> None:
    assert filters.app_repo_public(url) == public


def test_the_credentials_go_to_git_through_its_environment_only(filters: ModuleType) -> None:
    apps = [_git(repo="https://ci:s3cret@git.example.com/org/shop.git")]
    normal = filters.app_normalize(apps, ".", "/srv")[0]
    assert normal["repo"] == "https://git.example.com/org/shop.git"
    assert filters.app_git_environment(apps, "shop") == {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "url.https://ci:s3cret@git.example.com/org/shop.git.insteadOf",
        "GIT_CONFIG_VALUE_0": "https://git.example.com/org/shop.git",
    }
    assert filters.app_git_environment([_git()], "shop") == {}


def test_signature_options_are_normalised(filters: ModuleType) -> None:
    normal = filters.app_normalize([_git()], ".", "/srv")[0]
    assert normal["verify_commit"] is False and normal["gpg_whitelist"] == []
    spaced = " ".join(FPR[i : i + 4] for i in range(0, 40, 4)).lower()
    normal = filters.app_normalize([_git(verify_commit=True, gpg_whitelist=[spaced])], ".", "/srv")[0]
    assert normal["verify_commit"] is True and normal["gpg_whitelist"] == [FPR]
    assert _errors(filters, _git(verify_commit=True, gpg_whitelist=[spaced])) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"verify_commit": "yes"}, "verify_commit='yes' is invalid: expected true or false"),
        ({"verify_commit": True, "gpg_whitelist": ["ABCD"]}, "gpg_whitelist=['ABCD'] is invalid"),
        ({"verify_commit": True, "gpg_whitelist": FPR}, "is invalid: expected a list of full key fingerprints"),
        ({"gpg_whitelist": [FPR]}, "gpg_whitelist is given but verify_commit is not true"),
        ({"verify_commit": True, "source": "pip", "requirement": "shop==1"}, "is invalid for a pip source"),
    ],
)
def test_bad_signature_options_are_named(filters: ModuleType, fields: dict[str, object], message: str) -> None:
    errors = _errors(filters, _git(**fields))
    assert any(message in e for e in errors), errors


class _AuthHandler(http.server.SimpleHTTPRequestHandler):
    """Git's dumb HTTP protocol from a directory, behind Basic auth (the credentials of the test's URL)."""

    expected = "Basic " + base64.b64encode(b"ci:s3cret").decode()

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A bare repository with one commit, served over HTTP on loopback; its URL with credentials."""
    work, bare = tmp_path / "work", tmp_path / "served" / "shop.git"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}  # fmt: skip
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "main.py").write_text("app = None\n")
    subprocess.run(["git", "-C", str(work), "add", "."], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "one"], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    handler = partial(_AuthHandler, directory=str(tmp_path / "served"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://ci:s3cret@127.0.0.1:{httpd.server_address[1]}/shop.git"
    finally:
        httpd.shutdown()


def _clone(url: str, dest: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", **extra_env}
    env.pop("GIT_CONFIG_GLOBAL", None)
    return subprocess.run(["git", "clone", "-q", url, str(dest)], capture_output=True, text=True, env=env, check=False)


@pytest.mark.skipif(shutil.which("git") is None, reason="git missing")
def test_a_clone_keeps_no_credentials_yet_fetches_with_them(filters: ModuleType, server: str, tmp_path: Path) -> None:
    apps = [_git(repo=server)]
    public = filters.app_normalize(apps, ".", "/srv")[0]["repo"]
    # As the role cloned before: the URL with its token is what .git/config keeps, readable by the app.
    naive = _clone(server, tmp_path / "naive", {})
    assert naive.returncode == 0, naive.stderr
    assert "s3cret" in (tmp_path / "naive" / ".git" / "config").read_text()
    # The public URL alone is refused by the server: the credentials are needed.
    assert _clone(public, tmp_path / "refused", {}).returncode != 0
    # The public URL with the environment: fetched, and nothing under .git holds the token.
    done = _clone(public, tmp_path / "clone", filters.app_git_environment(apps, "shop"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "clone" / "main.py").exists()
    stored = "".join(p.read_text(errors="replace") for p in (tmp_path / "clone" / ".git").rglob("*") if p.is_file())
    assert "s3cret" not in stored
    assert f"url = {public}" in (tmp_path / "clone" / ".git" / "config").read_text()
    # A later fetch (the next deploy) works the same way.
    fetch = subprocess.run(
        ["git", "-C", str(tmp_path / "clone"), "fetch", "-q"], capture_output=True, text=True, check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **filters.app_git_environment(apps, "shop")},
    )  # fmt: skip
    assert fetch.returncode == 0, fetch.stderr
