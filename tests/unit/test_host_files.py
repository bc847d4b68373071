"""plugins/modules/host_files.py: several files in one module run, records before the change, nothing in check mode.

The module runs for real (a subprocess with its arguments file, as Ansible starts it) on files under tmp_path; the
tests run as root on these machines, so owner and group are root's.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import load_module

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "plugins" / "modules" / "host_files.py"


@pytest.fixture(scope="module")
def host_files() -> ModuleType:
    return load_module(MODULE)


def run(tmp_path: Path, check: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
    """Run the module with ARGS the way Ansible does (an arguments file) and return its JSON result."""
    args_file = tmp_path / "args.json"
    args_file.write_text(
        json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}})
    )
    done = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False)
    return json.loads(done.stdout)


def spec(dest: Path, content: str, mode: str = "0644", **more: Any) -> dict[str, Any]:
    return {"dest": str(dest), "content": content, "owner": "root", "group": "root", "mode": mode, **more}


@pytest.mark.parametrize(
    ("records", "changing", "due"),
    [
        ([{"path": "r", "if_changed": ["a"]}], ["a"], ["r"]),
        ([{"path": "r", "if_changed": ["a"]}], ["b"], []),
        ([{"path": "r", "if_changed": ["a"]}], [], []),
        ([{"path": "r", "always": True}], [], ["r"]),
        ([{"path": "r", "if_changed": ["a", "b"]}, {"path": "s", "if_changed": ["c"]}], ["b", "c"], ["r", "s"]),
    ],
)
def test_a_record_is_due_when_a_file_it_names_changes(
    host_files: ModuleType, records: list[dict[str, Any]], changing: list[str], due: list[str]
) -> None:
    assert [r["path"] for r in host_files.due_records(records, changing)] == due


def test_a_tree_makes_its_directories_parents_first(host_files: ModuleType) -> None:
    dirs, files = host_files.tree_entries(
        {
            "dest": "/b/",
            "files": {"x/y/z.txt": "1", "a.py": "2", "x/w": "3"},
            "owner": "root",
            "group": "g",
            "mode": "0644",
            "dir_mode": "0755",
        }
    )
    assert [d["path"] for d in dirs] == ["/b", "/b/x", "/b/x/y"]
    assert {d["mode"] for d in dirs} == {"0755"}
    assert [(f["dest"], f["content"], f["group"]) for f in files] == [
        ("/b/a.py", "2", "g"),
        ("/b/x/w", "3", "g"),
        ("/b/x/y/z.txt", "1", "g"),
    ]


@pytest.mark.parametrize("rel", ["../etc/passwd", "/etc/passwd", "a/../../b"])
def test_a_tree_refuses_a_path_out_of_it(host_files: ModuleType, rel: str) -> None:
    with pytest.raises(ValueError, match="not a relative path"):
        host_files.tree_entries({"dest": "/b", "files": {rel: ""}, "owner": "root", "group": "root", "mode": "0644"})


def test_writes_the_files_that_differ_and_only_those(tmp_path: Path) -> None:
    same, other, new = tmp_path / "same", tmp_path / "other", tmp_path / "sub" / "new"
    same.write_text("kept\n")
    same.chmod(0o644)
    other.write_text("old\n")
    other.chmod(0o644)
    result = run(
        tmp_path,
        dirs=[{"path": str(tmp_path / "sub"), "owner": "root", "group": "root", "mode": "0750"}],
        files=[spec(same, "kept\n"), spec(other, "new\n", mode="0600"), spec(new, "")],
    )
    assert result["changed"] is True
    assert result["changed_files"] == [str(other), str(new)]
    assert result["changed_dirs"] == [str(tmp_path / "sub")]
    assert other.read_text() == "new\n" and stat.S_IMODE(other.stat().st_mode) == 0o600
    assert new.read_text() == "" and stat.S_IMODE((tmp_path / "sub").stat().st_mode) == 0o750
    again = run(tmp_path, files=[spec(same, "kept\n"), spec(other, "new\n", mode="0600"), spec(new, "")])
    assert again["changed"] is False and again["changed_files"] == []


def test_a_mode_change_alone_is_a_change(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    target.chmod(0o600)
    assert run(tmp_path, files=[spec(target, "x", mode="0644")])["changed_files"] == [str(target)]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and target.read_text() == "x"


def test_records_are_written_before_the_change_and_only_when_due(tmp_path: Path) -> None:
    target = tmp_path / "unit"
    target.write_text("old")
    target.chmod(0o644)
    records = [
        {"path": str(tmp_path / "restart"), "content": "restart\n", "if_changed": [str(target)]},
        {"path": str(tmp_path / "reload"), "content": "reload\n", "if_changed": [str(tmp_path / "elsewhere")]},
    ]
    # A validation that fails after the record was written: the record stays (the next run does the restart), the
    # file keeps its old content.
    failed = run(tmp_path, files=[spec(target, "new", validate="false %s")], records=records)
    assert failed.get("failed") is True and "failed validation" in failed["msg"] and str(target) in failed["msg"]
    assert target.read_text() == "old"
    assert (tmp_path / "restart").read_text() == "restart\n"
    assert stat.S_IMODE((tmp_path / "restart").stat().st_mode) == 0o600
    assert not (tmp_path / "reload").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".unit.")]  # no candidate left behind
    done = run(tmp_path, files=[spec(target, "new", validate="grep -q new %s")], records=records)
    assert done["records"] == [str(tmp_path / "restart")] and target.read_text() == "new"


def test_check_mode_reports_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    result = run(
        tmp_path,
        check=True,
        diff=True,
        dirs=[{"path": str(tmp_path / "d"), "owner": "root", "group": "root", "mode": "0755"}],
        files=[spec(target, "new"), spec(tmp_path / "quiet", "secret", diff=False)],
        records=[{"path": str(tmp_path / "rec"), "always": True}],
    )
    assert result["changed"] is True
    assert result["changed_files"] == [str(target), str(tmp_path / "quiet")]
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["args.json", "f"]
    assert result["diff"] == [
        {"before_header": str(target), "after_header": str(target), "before": "old", "after": "new"}
    ]


def test_a_missing_owner_is_named(tmp_path: Path) -> None:
    result = run(tmp_path, files=[{**spec(tmp_path / "f", "x"), "group": "no-such-group-here"}])
    assert result.get("failed") is True and "no group 'no-such-group-here'" in result["msg"]
    assert not (tmp_path / "f").exists()


def test_a_file_can_come_from_the_host_and_its_change_is_tagged(tmp_path: Path) -> None:
    recorded, live = tmp_path / "recorded.env", tmp_path / "live.env"
    recorded.write_text("PORT=8000\n")
    live.write_text("PORT=80\n")
    live.chmod(0o640)
    files = [spec(live, "", mode="0640", src=str(recorded), tag="env"), spec(tmp_path / "l", "x", tag="socket")]
    (tmp_path / "l").write_text("x")
    (tmp_path / "l").chmod(0o644)
    result = run(tmp_path, files=files)
    assert result["changed_tags"] == ["env"] and live.read_text() == "PORT=8000\n"
    gone = run(tmp_path, files=[spec(live, "", src=str(tmp_path / "pruned.env"))])
    assert gone.get("failed") is True and "pruned.env is not a file on the host" in gone["msg"]


def test_links_move_in_order_and_only_when_they_point_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "releases" / "a").mkdir(parents=True)
    (tmp_path / "releases" / "b").mkdir()
    link = tmp_path / "app"
    link.symlink_to("releases/a")
    links = [{"dest": str(link), "src": "releases/b", "owner": "root", "group": "root"}]
    assert run(tmp_path, check=True, links=links)["changed_links"] == [str(link)]
    assert os.readlink(link) == "releases/a"  # check mode moved nothing
    assert run(tmp_path, links=links)["changed_links"] == [str(link)]
    assert os.readlink(link) == "releases/b"
    assert run(tmp_path, links=links)["changed"] is False


@pytest.mark.parametrize(
    ("existing", "target", "message"),
    [
        ("dir", "releases/a", "is not a symbolic link"),
        ("none", "releases/gone", "its target releases/gone does not exist"),
    ],
)
def test_a_link_is_refused_over_a_directory_or_to_nothing(
    tmp_path: Path, existing: str, target: str, message: str
) -> None:
    (tmp_path / "releases" / "a").mkdir(parents=True)
    if existing == "dir":
        (tmp_path / "app").mkdir()
    result = run(tmp_path, links=[{"dest": str(tmp_path / "app"), "src": target, "owner": "root", "group": "root"}])
    assert result.get("failed") is True and message in result["msg"]
    assert (tmp_path / "app").is_dir() == (existing == "dir") and not (tmp_path / "app").is_symlink()


def test_checksums_are_those_stat_reports_of_the_files_written(tmp_path: Path) -> None:
    """The app role keys its venvs by the stack requirements' checksum: this one must equal ansible.builtin.stat's."""
    text, other = tmp_path / "text", tmp_path / "other"
    result = run(tmp_path, files=[spec(text, "flask==3.0.3 \\\n  --hash=sha256:é\n"), spec(other, "")])
    assert result["checksums"] == {str(path): hashlib.sha1(path.read_bytes()).hexdigest() for path in (text, other)}


def test_absent_paths_go_last_and_only_what_is_there_is_a_change(tmp_path: Path) -> None:
    """A record is removed once its change is in place: after the files and links of the same run, in check mode not."""
    record, dangling = tmp_path / "pending.restart", tmp_path / "gone.link"
    record.write_text("restart\n")
    dangling.symlink_to("nowhere")
    absent = [str(record), str(dangling), str(tmp_path / "never-there")]
    preview = run(tmp_path, check=True, absent=absent)
    assert preview["changed"] is True and preview["removed"] == [str(record), str(dangling)]
    assert record.exists() and dangling.is_symlink()
    result = run(tmp_path, files=[spec(tmp_path / "f", "x")], absent=absent)
    assert result["removed"] == [str(record), str(dangling)] and (tmp_path / "f").read_text() == "x"
    assert not record.exists() and not dangling.is_symlink()
    again = run(tmp_path, files=[spec(tmp_path / "f", "x")], absent=absent)
    assert again["changed"] is False and again["removed"] == []


def test_absent_refuses_a_directory(tmp_path: Path) -> None:
    (tmp_path / "releases").mkdir()
    result = run(tmp_path, absent=[str(tmp_path / "releases")])
    assert result.get("failed") is True and "is a directory, refusing" in result["msg"]
    assert (tmp_path / "releases").is_dir()


def test_bytes_travel_as_base64_and_compare_as_bytes(tmp_path: Path) -> None:
    """A wheel is not text: it is written byte for byte, an unchanged one is no change, and no diff shows it."""
    import base64

    data = bytes(range(256)) * 3  # every byte value, invalid UTF-8 included
    wheel = tmp_path / "meinheld.whl"
    entry = {
        "dest": str(wheel),
        "content_base64": base64.b64encode(data).decode(),
        "owner": "root",
        "group": "root",
        "mode": "0644",
    }
    result = run(tmp_path, diff=True, files=[entry])
    assert result["changed"] is True and wheel.read_bytes() == data
    assert result["diff"] == [] and "\\udc" not in json.dumps(result)
    assert result["checksums"][str(wheel)] == hashlib.sha1(data).hexdigest()
    assert run(tmp_path, files=[entry])["changed"] is False
    broken = run(tmp_path, files=[{**entry, "content_base64": "not base64!"}])
    assert broken.get("failed") is True and "content_base64 is not base64" in broken["msg"]


def test_an_empty_dir_loses_what_a_stopped_build_left(tmp_path: Path) -> None:
    venv = tmp_path / "venvs" / "key"
    (venv / "lib").mkdir(parents=True)
    (venv / "lib" / "half-written.py").write_text("x")
    entry = {"path": str(venv), "owner": "root", "group": "root", "mode": "0750", "empty": True}
    preview = run(tmp_path, check=True, dirs=[entry])
    assert preview["changed"] is True and (venv / "lib" / "half-written.py").exists()
    result = run(tmp_path, dirs=[entry])
    assert result["changed_dirs"] == [str(venv)] and list(venv.iterdir()) == []
    assert stat.S_IMODE(venv.stat().st_mode) == 0o750
    (tmp_path / "file").write_text("")
    refused = run(tmp_path, dirs=[{**entry, "path": str(tmp_path / "file")}])
    assert refused.get("failed") is True and "refusing to empty it" in refused["msg"]


@pytest.mark.parametrize(
    ("found", "wanted"),
    [(0o600, 0o640), (0o644, 0o640), (0o666, 0o640), (0o700, 0o750), (0o755, 0o750), (0o711, 0o750), (0o001, 0o750)],
)
def test_a_recursed_file_keeps_execute_only_where_it_had_one(host_files: ModuleType, found: int, wanted: int) -> None:
    """u=rwX,g=rX,o=, as chmod applies it to a built venv's files (0750 is the directories' mode)."""
    assert host_files.file_mode(found, 0o750) == wanted


def test_recurse_hands_the_whole_tree_over_and_then_is_no_change(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "bin" / "python").chmod(0o755)
    (venv / "lib.py").write_text("")
    (venv / "lib.py").chmod(0o666)
    (venv / "bin" / "python3").symlink_to("python")
    (venv / "bin").chmod(0o777)
    entry = {"path": str(venv), "owner": "root", "group": "root", "mode": "0750", "recurse": True}
    preview = run(tmp_path, check=True, dirs=[entry])
    assert preview["changed"] is True and stat.S_IMODE((venv / "lib.py").stat().st_mode) == 0o666
    assert run(tmp_path, dirs=[entry])["changed"] is True
    modes = {
        p.name: stat.S_IMODE(p.lstat().st_mode) for p in [venv, venv / "bin", venv / "bin" / "python", venv / "lib.py"]
    }
    assert modes == {"venv": 0o750, "bin": 0o750, "python": 0o750, "lib.py": 0o640}
    assert (venv / "bin" / "python3").is_symlink()
    assert run(tmp_path, dirs=[entry])["changed"] is False
