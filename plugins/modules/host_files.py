#!/usr/bin/python
"""Ansible module: put a set of small rendered files and their directories on the host in one module run.

A loop of ``template`` or ``copy`` costs two module runs per file (a stat, then a copy or a file), each a Python start
on the host: most of a rerun that changes nothing. The roles render on the controller (the ``template`` and ``file``
lookups) and hand every file of one concern to this module, which compares, validates and writes them in one run.
A record file can be written before the change that needs it (the restart or reload a stopped run must not lose).
"""

from __future__ import annotations

import base64
import binascii
import grp
import hashlib
import os
import pwd
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: host_files
short_description: Write several small files and their directories in one module run
description:
  - Creates the directories, then compares each file's content, owner, group and mode with what is asked and writes
    only those that differ, each through a temporary file in its own directory that C(validate) checks first and an
    atomic rename.
  - Before any file changes, writes the C(records) whose C(if_changed) names a file that is about to change (or that
    have C(always)), so that a run stopped after the change still leaves the reload or restart it needs on the host.
  - In check mode it reports what it would change and writes nothing.
options:
  dirs:
    description:
      - Directories to create (not their parents), each C(path), C(owner), C(group), C(mode), and optionally
        C(empty) (true - whatever is there is removed first, content and all, such as what a stopped build left) and
        C(recurse) (true - everything under it gets the owner and group too, directories the mode, files the mode
        with its execute bits kept only where the file had one, as chmod's C(X) does; links are not followed).
    type: list
    elements: dict
    default: []
  files:
    description:
      - Files to write, each C(dest), C(content) (text), C(content_base64) (bytes, such as a wheel, which the
        C(wsgiops.meinheld_gunicorn.file_base64) lookup reads on the controller) or C(src) (a file on the host to
        copy), C(owner), C(group), C(mode), and optionally C(validate) (a command with C(%s) for the candidate
        file), C(diff) (false keeps the content out of C(--diff) output; bytes never show) and C(tag) (a name
        reported in C(changed_tags) when the file changes).
    type: list
    elements: dict
    default: []
  links:
    description:
      - Symbolic links to point, after the files, in the order given, each C(dest), C(src) (the target, as the link
        will hold it), C(owner), C(group); a link that points elsewhere is replaced by one atomic rename. A C(dest)
        that is something other than a link is refused, and so is a target that does not exist (outside check mode).
    type: list
    elements: dict
    default: []
  tree:
    description:
      - A directory of files given as C(dest) (the directory), C(files) (relative path -> content), C(owner),
        C(group), C(mode) (the files') and C(dir_mode) (the directories', C(dest) included); added to C(dirs) and
        C(files). Files already there and not named are left alone.
    type: dict
  records:
    description:
      - Files written (root, 0600) before any of C(files) changes, each C(path), C(content), and C(if_changed) (the
        dests whose change needs it) or C(always).
    type: list
    elements: dict
    default: []
  absent:
    description:
      - Paths of files (or links) to remove, last of all, once everything else is in place (records whose change was
        applied, a candidate that served its check). A directory is refused; a path that is not there is no change.
    type: list
    elements: str
    default: []
author: gunicorn-suite
"""

EXAMPLES = r"""
- name: Install the template units
  wsgiops.meinheld_gunicorn.host_files:
    files:
      - dest: /etc/systemd/system/gunicorn@.service
        content: "{{ lookup('ansible.builtin.template', 'gunicorn@.service.j2') }}"
        owner: root
        group: root
        mode: "0644"
"""

RETURN = r"""
changed_files:
  description: The dests whose content or attributes changed (or would change, in check mode), in the order given.
  type: list
  elements: str
  returned: always
changed_dirs:
  description: The directories created or whose attributes changed.
  type: list
  elements: str
  returned: always
changed_links:
  description: The dests of the links that were (or would be) pointed anew.
  type: list
  elements: str
  returned: always
checksums:
  description: dest -> SHA-1 of the content asked for (what ansible.builtin.stat reports once it is written).
  type: dict
  returned: always
changed_tags:
  description: The tags of the files in C(changed_files), each once.
  type: list
  elements: str
  returned: always
records:
  description: The records written before the change.
  type: list
  elements: str
  returned: always
removed:
  description: The paths of C(absent) that were (or would be) removed.
  type: list
  elements: str
  returned: always
"""


def _uid(owner: str) -> int:
    return pwd.getpwnam(owner).pw_uid


def _gid(group: str) -> int:
    return grp.getgrnam(group).gr_gid


def attributes_differ(path: str, owner: str, group: str, mode: str) -> bool:
    """Whether the existing PATH differs from the owner, group and (octal) mode asked for; a missing one does."""
    try:
        found = os.lstat(path)
        return found.st_uid != _uid(owner) or found.st_gid != _gid(group) or stat.S_IMODE(found.st_mode) != int(mode, 8)
    except (FileNotFoundError, KeyError):  # KeyError: an account that a check run has not created
        return True


def read_text(path: str) -> str | None:
    """The current content of PATH, None when there is none (or it is not a regular file)."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "surrogateescape")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def changed_files(files: Iterable[Mapping[str, Any]], current: Mapping[str, str | None]) -> list[str]:
    """The dests of FILES whose content, owner, group or mode differ from what is asked.

    CURRENT maps each dest to its text, None when it is missing.
    """
    return [
        f["dest"]
        for f in files
        if current.get(f["dest"]) != f["content"] or attributes_differ(f["dest"], f["owner"], f["group"], f["mode"])
    ]


def due_records(records: Iterable[Mapping[str, Any]], changing: Iterable[str]) -> list[Mapping[str, Any]]:
    """The RECORDS to write before a change of the dests in CHANGING: those marked always, or naming one of them."""
    changing = set(changing)
    return [r for r in records if r.get("always") or changing & set(r.get("if_changed") or [])]


def _write(module: AnsibleModule, dest: str, content: str, owner: str, group: str, mode: str, validate: str) -> None:
    """Write CONTENT to DEST through a validated temporary file beside it and an atomic rename."""
    fd, candidate = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=f".{os.path.basename(dest)}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode("utf-8", "surrogateescape"))
        os.chown(candidate, _uid(owner), _gid(group))
        os.chmod(candidate, int(mode, 8))
        if validate:
            if "%s" not in validate:
                module.fail_json(msg=f"{dest}: validate must contain %s, got {validate!r}")
            rc, out, err = module.run_command(shlex.split(validate.replace("%s", shlex.quote(candidate))))
            if rc != 0:
                module.fail_json(msg=f"{dest}: failed validation (exit {rc}): {(err or out).strip()}", rc=rc)
        os.replace(candidate, dest)
    finally:
        if os.path.exists(candidate):
            os.unlink(candidate)


def _ensure_link(module: AnsibleModule, spec: Mapping[str, Any]) -> bool:
    """Point SPEC's link at its target (replacing one that points elsewhere); whether it was (or would be) changed."""
    dest, target = spec["dest"], spec["src"]
    if os.path.lexists(dest) and not os.path.islink(dest):
        module.fail_json(msg=f"{dest}: exists and is not a symbolic link, refusing to replace it with one to {target}")
    if os.path.islink(dest) and os.readlink(dest) == target:
        found = os.lstat(dest)
        if found.st_uid == _uid(spec["owner"]) and found.st_gid == _gid(spec["group"]):
            return False
    if module.check_mode:
        return True
    if not os.path.exists(os.path.join(os.path.dirname(dest), target)):
        module.fail_json(msg=f"{dest}: its target {target} does not exist")
    candidate = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.{os.getpid()}.link")
    if os.path.lexists(candidate):
        os.unlink(candidate)
    os.symlink(target, candidate)
    os.lchown(candidate, _uid(spec["owner"]), _gid(spec["group"]))
    os.replace(candidate, dest)
    return True


def _remove(module: AnsibleModule, path: str) -> bool:
    """Remove the file or link at PATH; whether it was (or would be) there. A directory is refused, not emptied."""
    if not os.path.lexists(path):
        return False
    if os.path.isdir(path) and not os.path.islink(path):
        module.fail_json(msg=f"absent: {path} is a directory, refusing to remove it")
    if not module.check_mode:
        os.unlink(path)
    return True


def file_mode(found: int, mode: int) -> int:
    """The mode a file under a recursed directory gets: MODE, with execute bits only if the file had any (chmod X)."""
    return mode if found & 0o111 else mode & ~0o111


def _recurse(module: AnsibleModule, spec: Mapping[str, Any]) -> bool:
    """Give everything under SPEC's directory its owner, group and mode (files: file_mode); whether any changed."""
    uid, gid, mode = _uid(spec["owner"]), _gid(spec["group"]), int(spec["mode"], 8)
    changed = False
    for top, dirs, files in os.walk(spec["path"]):
        for name in dirs + files:
            path = os.path.join(top, name)
            found = os.lstat(path)
            if stat.S_ISLNK(found.st_mode):
                wanted = None
            elif stat.S_ISDIR(found.st_mode):
                wanted = mode
            else:
                wanted = file_mode(stat.S_IMODE(found.st_mode), mode)
            if (found.st_uid, found.st_gid) != (uid, gid):
                changed = True
                if not module.check_mode:
                    os.lchown(path, uid, gid)
            if wanted is not None and stat.S_IMODE(found.st_mode) != wanted:
                changed = True
                if not module.check_mode:
                    os.chmod(path, wanted)
    return changed


def _ensure_dir(module: AnsibleModule, spec: Mapping[str, Any]) -> bool:
    """Create SPEC's directory (emptied first with C(empty)) or fix its attributes; whether anything changed."""
    path = spec["path"]
    if spec.get("empty") and os.path.lexists(path):
        if os.path.islink(path) or not os.path.isdir(path):
            module.fail_json(msg=f"{path}: exists and is not a directory, refusing to empty it")
        if module.check_mode:
            return True
        shutil.rmtree(path)
    if os.path.isdir(path) and not os.path.islink(path):
        changed = attributes_differ(path, spec["owner"], spec["group"], spec["mode"])
        if spec.get("recurse"):
            changed = _recurse(module, spec) or changed
        if not changed:
            return False
    elif os.path.lexists(path):
        module.fail_json(msg=f"{path}: exists and is not a directory")
    if not module.check_mode:
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)
        os.chown(path, _uid(spec["owner"]), _gid(spec["group"]))
        os.chmod(path, int(spec["mode"], 8))
    return True


def tree_entries(tree: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The dirs and files of a TREE ({dest, files: {relative path: content}, owner, group, mode, dir_mode}).

    Every directory on the way to a file comes first, parents before children, then the files in path order.
    """
    base = tree["dest"].rstrip("/")
    owner, group = tree["owner"], tree["group"]
    rels = sorted(tree.get("files") or {})
    for rel in rels:
        if rel.startswith("/") or ".." in rel.split("/"):
            raise ValueError(f"tree: {rel!r} is not a relative path inside {base}")
    parents = sorted({"/".join(rel.split("/")[:depth]) for rel in rels for depth in range(1, rel.count("/") + 1)})
    dirs = [{"path": base, "owner": owner, "group": group, "mode": tree["dir_mode"]}] + [
        {"path": f"{base}/{parent}", "owner": owner, "group": group, "mode": tree["dir_mode"]} for parent in parents
    ]
    files = [
        {"dest": f"{base}/{rel}", "content": tree["files"][rel], "owner": owner, "group": group, "mode": tree["mode"]}
        for rel in rels
    ]
    return dirs, files


def _check_spec(module: AnsibleModule, kind: str, entries: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Fail with the entry and the key when an entry lacks one, or names an owner or group the host does not have."""
    for entry in entries:
        where = entry.get("dest") or entry.get("path")
        for key in keys:
            if entry.get(key) in (None, ""):
                module.fail_json(msg=f"{kind}: {key!r} is required, got {entry.get(key)!r} in {where}")
        for key, lookup in (("owner", _uid), ("group", _gid)):
            if key in keys and not module.check_mode:  # a check run may not have created the account
                try:
                    lookup(entry[key])
                except KeyError:
                    module.fail_json(msg=f"{kind}: no {key} {entry[key]!r} on the host for {where}")


def main() -> None:
    """Create the dirs, write the due records, the changed files, point the links, remove the absent; report it."""
    module = AnsibleModule(
        argument_spec={
            "dirs": {"type": "list", "elements": "dict", "default": []},
            "files": {"type": "list", "elements": "dict", "default": []},
            "links": {"type": "list", "elements": "dict", "default": []},
            "tree": {"type": "dict"},
            "records": {"type": "list", "elements": "dict", "default": []},
            "absent": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    dirs, records = module.params["dirs"], module.params["records"]
    # Copies: the contents filled in below (a host file's, decoded bytes) must not echo back in the invocation.
    files = [dict(f) for f in module.params["files"]]
    if module.params["tree"]:
        tree = module.params["tree"]
        _check_spec(module, "tree", [tree], ("dest", "owner", "group", "mode", "dir_mode"))
        try:
            tree_dirs, tree_files = tree_entries(tree)
        except ValueError as error:
            module.fail_json(msg=str(error))
        dirs, files = dirs + tree_dirs, files + tree_files
    _check_spec(module, "dirs", dirs, ("path", "owner", "group", "mode"))
    _check_spec(module, "files", files, ("dest", "owner", "group", "mode"))
    _check_spec(module, "records", records, ("path",))
    _check_spec(module, "links", module.params["links"], ("dest", "src", "owner", "group"))
    for f in files:
        if f.get("content_base64"):
            try:
                f["content"] = base64.b64decode(f["content_base64"], validate=True).decode("utf-8", "surrogateescape")
            except (binascii.Error, ValueError) as error:
                module.fail_json(msg=f"{f['dest']}: content_base64 is not base64: {error}")
            f["diff"] = False  # bytes: no text diff to show
        if f.get("src"):
            f["content"] = read_text(f["src"])
            if f["content"] is None:
                module.fail_json(msg=f"{f['dest']}: its source {f['src']} is not a file on the host")
        f["content"] = "" if f.get("content") is None else str(f["content"])

    changed_dirs = [spec["path"] for spec in dirs if _ensure_dir(module, spec)]
    current = {f["dest"]: read_text(f["dest"]) for f in files}
    changing = changed_files(files, current)
    written = []
    for record in due_records(records, changing):
        written.append(record["path"])
        if not module.check_mode:
            _write(module, record["path"], str(record.get("content") or ""), "root", "root", "0600", "")
    diff = []
    for f in files:
        if f["dest"] not in changing:
            continue
        if f.get("diff", True):
            diff.append(
                {
                    "before_header": f["dest"],
                    "after_header": f["dest"],
                    "before": current[f["dest"]] or "",
                    "after": f["content"],
                }
            )
        if module.check_mode:
            continue
        if current[f["dest"]] == f["content"]:  # attributes only
            os.chown(f["dest"], _uid(f["owner"]), _gid(f["group"]))
            os.chmod(f["dest"], int(f["mode"], 8))
        else:
            _write(module, f["dest"], f["content"], f["owner"], f["group"], f["mode"], f.get("validate") or "")
    changed_links = [spec["dest"] for spec in module.params["links"] if _ensure_link(module, spec)]
    removed = [path for path in dict.fromkeys(module.params["absent"]) if _remove(module, path)]
    result: dict[str, Any] = {
        "changed": bool(changed_dirs or changing or written or changed_links or removed),
        "changed_links": changed_links,
        "checksums": {
            f["dest"]: hashlib.sha1(f["content"].encode("utf-8", "surrogateescape")).hexdigest() for f in files
        },
        "changed_files": changing,
        "changed_dirs": changed_dirs,
        "changed_tags": list(dict.fromkeys(f["tag"] for f in files if f["dest"] in changing and f.get("tag"))),
        "records": written,
        "removed": removed,
    }
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
