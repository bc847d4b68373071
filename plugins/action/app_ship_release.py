"""Action plugin: ship one local release to the host as a single tar archive, extracted there as root.

Copying a release file by file costs a stat and a copy module run per file, and every code change is a new release
that is copied whole: minutes for an app of a few hundred files, far more on a slow host. One archive costs one
transfer and one extraction whatever the number of files. The archive carries the ownership and modes the role wants
(root-owned, group NAME, the app can read its code but not change it), so the extraction needs no per-file fix-up.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DIR_MODE = 0o750
FILE_MODE = 0o640
EXECUTABLE_MODE = 0o750


def build_archive(
    path: str,
    group: str,
    dirs: Iterable[str],
    files: Mapping[str, str],
    executable: Iterable[str],
    top: str = "",
    marker: str = "",
) -> None:
    """Write an uncompressed tar of the release: ``dirs`` (relative paths) and ``files`` (relative path -> source).

    Every entry is root:``group``; directories and the ``executable`` files are 0750, other files 0640. Files are
    read through symlinks (the shipped release holds the content, as a file-by-file copy would). Entries are sorted so
    that the same release makes the same archive. With ``top``, every entry lies under that directory, which is the
    archive's first entry (so extracting it into the releases directory creates the release directory too); with
    ``marker``, an empty file of that name is the last entry: an extraction stopped halfway leaves no marker.
    """
    executable = set(executable)

    def name(rel: str) -> str:
        return f"{top}/{rel}" if top else rel

    now = int(time.time())  # the release directory and its marker: when it was shipped (pruning sorts by mtime)

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for rel in ([""] if top else []) + sorted(dirs):
            info = _owned(tarfile.TarInfo(name(rel).rstrip("/") or top), group)
            info.type = tarfile.DIRTYPE
            info.mode = DIR_MODE
            info.mtime = now
            tar.addfile(info)
        for rel, src in sorted(files.items()):
            info = _owned(tarfile.TarInfo(name(rel)), group)
            stat = os.stat(src)
            info.size = stat.st_size
            info.mtime = int(stat.st_mtime)
            info.mode = EXECUTABLE_MODE if rel in executable else FILE_MODE
            with open(src, "rb") as handle:
                tar.addfile(info, handle)
        if marker:
            info = _owned(tarfile.TarInfo(name(marker)), group)
            info.mode = FILE_MODE
            info.mtime = now
            tar.addfile(info)


def _owned(info: tarfile.TarInfo, group: str) -> tarfile.TarInfo:
    """Root owner and the app's group, by name: tar extracting as root looks the names up on the host."""
    info.uid, info.gid, info.uname, info.gname = 0, 0, "root", group
    return info


class ActionModule(ActionBase):
    """Build the archive on the controller, send it, and extract it with ansible.builtin.unarchive.

    The archive holds ``dest`` itself (extracted into its parent, which must exist) and ends with ``marker`` when one
    is given: one module run creates the release directory, its files and the proof that it was shipped whole.
    """

    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(("dest", "group", "dirs", "files", "executable", "marker"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Ship ``files`` and ``dirs`` into ``dest``; the result is unarchive's, plus the number of files shipped."""
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        for required in ("dest", "group"):
            if not args.get(required):
                raise AnsibleActionFail(f"app_ship_release: '{required}' is required, got {args.get(required)!r}")
        files = dict(args.get("files") or {})
        if self._task.check_mode:
            result.update(changed=True, files=len(files))
            return result
        try:
            with tempfile.TemporaryDirectory(prefix="app-release-") as local_dir:
                archive = os.path.join(local_dir, "release.tar")
                dest = args["dest"].rstrip("/")
                build_archive(
                    archive,
                    args["group"],
                    args.get("dirs") or [],
                    files,
                    args.get("executable") or [],
                    top=os.path.basename(dest),
                    marker=args.get("marker") or "",
                )
                remote = self._connection._shell.join_path(self._make_tmp_path(), "release.tar")
                self._transfer_file(archive, remote)
                self._fixup_perms2((os.path.dirname(remote), remote))
                extracted = self._execute_module(
                    module_name="ansible.builtin.unarchive",
                    module_args={"src": remote, "dest": os.path.dirname(dest), "remote_src": True},
                    task_vars=task_vars,
                )
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        result.update(extracted)
        result["files"] = len(files)
        return result
