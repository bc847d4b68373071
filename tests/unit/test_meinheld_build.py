"""Unit tests of meinheld_build.build's pure parts: checksums, the patch applier, the series, wheel naming/metadata."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from meinheld_build import build
from meinheld_build.build import BuildError

# ---------------------------------------------------------------------------------------------------------------- sha


def test_verify_sha256_accepts_the_pinned_content(tmp_path: Path) -> None:
    f = tmp_path / "a.tar.gz"
    f.write_bytes(b"content")
    build.verify_sha256(f, hashlib.sha256(b"content").hexdigest().upper())


def test_verify_sha256_refuses_other_content(tmp_path: Path) -> None:
    f = tmp_path / "a.tar.gz"
    f.write_bytes(b"tampered")
    with pytest.raises(BuildError, match="does not match the pinned"):
        build.verify_sha256(f, hashlib.sha256(b"content").hexdigest())


def test_pinned_sdist_is_the_one_pypi_publishes() -> None:
    assert build.SDIST_URL.endswith("/meinheld-1.0.2.tar.gz")
    assert build.SDIST_SHA256 == "008c76937ac2117cc69e032dc69cea9f85fc605de9bac1417f447c41c16a56d6"


class _FakeResponse(io.BytesIO):
    def __enter__(self) -> _FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_fetch_sdist_reuses_a_verified_download_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pkg.tar.gz").write_bytes(b"good")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not download")

    monkeypatch.setattr(build.urllib.request, "urlopen", no_network)
    got = build.fetch_sdist(tmp_path, "https://example.invalid/pkg.tar.gz", hashlib.sha256(b"good").hexdigest())
    assert got == tmp_path / "pkg.tar.gz"


def test_fetch_sdist_replaces_a_corrupt_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pkg.tar.gz").write_bytes(b"truncated")
    monkeypatch.setattr(build.urllib.request, "urlopen", lambda *a, **k: _FakeResponse(b"good"))
    got = build.fetch_sdist(tmp_path, "https://example.invalid/pkg.tar.gz", hashlib.sha256(b"good").hexdigest())
    assert got.read_bytes() == b"good"


def test_fetch_sdist_refuses_and_removes_a_bad_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.urllib.request, "urlopen", lambda *a, **k: _FakeResponse(b"evil"))
    with pytest.raises(BuildError, match="does not match"):
        build.fetch_sdist(tmp_path, "https://example.invalid/pkg.tar.gz", hashlib.sha256(b"good").hexdigest())
    assert list(tmp_path.iterdir()) == []


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_unpack_sdist_returns_the_source_tree(tmp_path: Path) -> None:
    sdist = _tarball(tmp_path / "s.tar.gz", {"meinheld-1.0.2/setup.py": b"setup()\n"})
    (tmp_path / "out").mkdir()
    assert build.unpack_sdist(sdist, tmp_path / "out") == tmp_path / "out" / "meinheld-1.0.2"


def test_unpack_sdist_refuses_members_outside_the_tree(tmp_path: Path) -> None:
    sdist = _tarball(tmp_path / "s.tar.gz", {"meinheld-1.0.2/setup.py": b"", "../escape": b"x"})
    (tmp_path / "out").mkdir()
    with pytest.raises(BuildError, match="unsafe member"):
        build.unpack_sdist(sdist, tmp_path / "out")
    assert not (tmp_path / "escape").exists()


# ------------------------------------------------------------------------------------------------------ patch applier

MODIFY = """Subject: a header the applier ignores
--- looks like a diff line but is prose
What: change b to B.

diff --git a/f.c b/f.c
index 1..2 100644
--- a/f.c
+++ b/f.c
@@ -1,3 +1,3 @@
 a
-b
+B
 c
"""


def test_apply_patch_modifies_a_file_and_ignores_the_header(tmp_path: Path) -> None:
    (tmp_path / "f.c").write_text("a\nb\nc\n")
    assert build.apply_patch(tmp_path, MODIFY) == ["f.c"]
    assert (tmp_path / "f.c").read_text() == "a\nB\nc\n"


def test_apply_patch_finds_a_hunk_at_an_offset(tmp_path: Path) -> None:
    (tmp_path / "f.c").write_text("x\ny\na\nb\nc\n")
    build.apply_patch(tmp_path, MODIFY)
    assert (tmp_path / "f.c").read_text() == "x\ny\na\nB\nc\n"


def test_apply_patch_refuses_context_that_does_not_match(tmp_path: Path) -> None:
    (tmp_path / "f.c").write_text("a\nchanged upstream\nc\n")
    with pytest.raises(BuildError, match=r"f\.c: hunk 1 .* does not match"):
        build.apply_patch(tmp_path, MODIFY)
    assert (tmp_path / "f.c").read_text() == "a\nchanged upstream\nc\n"


def test_apply_patch_creates_and_deletes_files(tmp_path: Path) -> None:
    (tmp_path / "old.h").write_text("one\ntwo\n")
    patch = """--- a/old.h
+++ /dev/null
@@ -1,2 +0,0 @@
-one
-two
--- /dev/null
+++ b/sub/new.toml
@@ -0,0 +1,2 @@
+[x]
+y = 1
"""
    assert build.apply_patch(tmp_path, patch) == ["old.h", "sub/new.toml"]
    assert not (tmp_path / "old.h").exists()
    assert (tmp_path / "sub" / "new.toml").read_text() == "[x]\ny = 1\n"


def test_apply_patch_refuses_to_create_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "new").write_text("already\n")
    with pytest.raises(BuildError, match="already exists"):
        build.apply_patch(tmp_path, "--- /dev/null\n+++ b/new\n@@ -0,0 +1 @@\n+x\n")


def test_apply_patch_handles_no_newline_at_end_of_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a\nlast")
    patch = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-last\n\\ No newline at end of file\n+last\n"
    build.apply_patch(tmp_path, patch)
    assert (tmp_path / "f").read_text() == "a\nlast\n"


def test_apply_patch_keeps_form_feeds_and_crlf_bytes(tmp_path: Path) -> None:
    (tmp_path / "f.c").write_bytes(b"a\nb\x0cpage\r\nc\n")
    patch = "--- a/f.c\n+++ b/f.c\n@@ -1,2 +1,3 @@\n a\n+inserted\n b\x0cpage\r\n"
    build.apply_patch(tmp_path, patch)
    assert (tmp_path / "f.c").read_bytes() == b"a\ninserted\nb\x0cpage\r\nc\n"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("just prose, no diff\n", "no file sections"),
        ("--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "outside the source tree"),
        ("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "outside the source tree"),
        ("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n", "hunk ends early"),
        ("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n?junk\n", None),
    ],
)
def test_parse_patch_rejects_malformed_or_unsafe_patches(patch: str, message: str | None) -> None:
    if message is None:  # a trailing junk line after a complete hunk is outside any hunk: ignored like a header
        assert len(build.parse_patch(patch)) == 1
        return
    with pytest.raises(BuildError, match=message):
        build.parse_patch(patch)


# ----------------------------------------------------------------------------------------------------------- series


def test_read_series_keeps_order_and_skips_comments(tmp_path: Path) -> None:
    for name in ("b.patch", "a.patch"):
        (tmp_path / name).write_text(MODIFY)
    (tmp_path / "series").write_text("# order matters\nb.patch\n\na.patch  # second\n")
    assert [p.name for p in build.read_series(tmp_path)] == ["b.patch", "a.patch"]


def test_read_series_fails_on_a_missing_patch(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("missing.patch\n")
    with pytest.raises(BuildError, match=r"missing\.patch"):
        build.read_series(tmp_path)


def test_series_hash_changes_with_content_and_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.patch", tmp_path / "b.patch"
    a.write_text("one")
    b.write_text("two")
    first = build.series_hash([a, b])
    assert build.series_hash([b, a]) != first
    b.write_text("two changed")
    assert build.series_hash([a, b]) != first


def test_local_version_says_patched_and_is_a_canonical_pep440_local_version(tmp_path: Path) -> None:
    (tmp_path / "0.patch").write_text("x")
    version = build.local_version([tmp_path / "0.patch"])
    assert re.fullmatch(r"1\.0\.2\+patched\.g[0-9a-f]{8}", version)


def test_set_version_requires_exactly_one_upstream_version(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text('setup(name="meinheld",\n    version="1.0.2",\n)\n')
    build.set_version(tmp_path, "1.0.2+patched.gabc")
    assert 'version="1.0.2+patched.gabc"' in (tmp_path / "setup.py").read_text()
    with pytest.raises(BuildError, match="exactly one"):
        build.set_version(tmp_path, "1.0.2+patched.gdef")


def test_the_real_series_is_complete_and_each_patch_says_what_and_why() -> None:
    patches = build.read_series()
    assert len(patches) >= 9
    listed = {p.name for p in patches}
    on_disk = {p.name for p in build.PATCH_DIR.glob("*.patch")}
    assert listed == on_disk, "every patch file is in the series and every series entry exists"
    for patch in patches:
        text = patch.read_text(encoding="latin-1")
        header = text.split("\ndiff --git", 1)[0]
        assert header.startswith("Subject: "), patch.name
        assert "\nWhat: " in header and "\nWhy: " in header, patch.name
        assert build.parse_patch(text), patch.name


def test_print_version_matches_the_series(capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main(["--print-version"]) == 0
    assert capsys.readouterr().out.strip() == build.local_version(build.read_series())


# ------------------------------------------------------------------------------------------------ wheel name/metadata


def _wheel(
    tmp_path: Path,
    version: str = "1.0.2+patched.gabcdef12",
    requires: tuple[str, ...] = ("greenlet>=3",),
    entry_points: str = "[gunicorn.workers]\ngunicorn_worker = meinheld.gmeinheld:MeinheldWorker\n",
) -> Path:
    path = tmp_path / f"meinheld-{version}-cp312-cp312-linux_x86_64.whl"
    metadata = "Metadata-Version: 2.1\nName: meinheld\nVersion: " + version + "\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"meinheld-{version}.dist-info/METADATA", metadata)
        wheel.writestr(f"meinheld-{version}.dist-info/entry_points.txt", entry_points)
    return path


def test_check_wheel_accepts_our_wheel(tmp_path: Path) -> None:
    info = build.check_wheel(_wheel(tmp_path), "1.0.2+patched.gabcdef12")
    assert (info.name, info.tags) == ("meinheld", "cp312-cp312-linux_x86_64")


@pytest.mark.parametrize(
    "requires",
    [("greenlet<0.5,>=0.4.5",), (), ("greenlet>=3", "greenlet<0.5"), ("greenlet>=2",)],
    ids=["stock-pin", "none", "two", "too-old"],
)
def test_check_wheel_refuses_any_other_greenlet_requirement(tmp_path: Path, requires: tuple[str, ...]) -> None:
    with pytest.raises(BuildError, match="expected exactly greenlet>=3"):
        build.check_wheel(_wheel(tmp_path, requires=requires), "1.0.2+patched.gabcdef12")


def test_check_wheel_refuses_another_version(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="expected meinheld"):
        build.check_wheel(_wheel(tmp_path, version="1.0.2"), "1.0.2+patched.gabcdef12")


def test_check_wheel_refuses_a_wheel_without_the_gunicorn_worker(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="gunicorn_worker"):
        build.check_wheel(_wheel(tmp_path, entry_points=""), "1.0.2+patched.gabcdef12")


def test_inspect_wheel_refuses_metadata_that_contradicts_the_file_name(tmp_path: Path) -> None:
    path = _wheel(tmp_path)
    renamed = path.with_name("meinheld-9.9-cp312-cp312-linux_x86_64.whl")
    path.rename(renamed)
    with pytest.raises(BuildError):
        build.inspect_wheel(renamed)
