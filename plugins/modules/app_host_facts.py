#!/usr/bin/python
"""Ansible module: read, in one module run, everything of the host the app role decides on before it changes anything.

The accounts and groups, the directories and the suite's markers under the apps root, the listening ports and who
holds them, and per app where its `app` and `venv` links point, the restart and release records in its directory and
whether its units are enabled and active. Each was a module run of its own (getent twice, find three times, the
listeners, two stats per app): a Python start on the host each, most of a rerun that changes nothing.
"""

from __future__ import annotations

import fnmatch
import glob
import grp
import os
import pwd
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wsgiops.meinheld_gunicorn.plugins.module_utils.app_layout import PRELOADED_MARKER, RUNTIME_ROOT
from ansible_collections.wsgiops.meinheld_gunicorn.plugins.module_utils.listeners import listeners

DOCUMENTATION = r"""
module: app_host_facts
short_description: Read the host's state the app role checks and plans from (changes nothing)
description:
  - Returns the host's accounts and groups (as ansible.builtin.getent does), the directories under C(apps_root) and
    those holding a C(marker) file, the listening TCP ports with the systemd units holding
    them, and for each of C(names) (an app's home is C(apps_root)/NAME) a stat of its C(app) and C(venv) links, the
    files named by C(found) in its home and in its serving release, and the state of its units.
  - Names that are not plain app names (letters, digits, C(_), C(-); the input check refuses the others) are skipped.
options:
  apps_root:
    description: The parent of the apps' directories.
    type: path
    required: true
  marker:
    description: The file name that marks an app directory as the suite's.
    type: str
    required: true
  names:
    description: The apps to read.
    type: list
    elements: str
    default: []
  found:
    description: File names (shell patterns) to list in each app's home and in the release its C(app) link names.
    type: list
    elements: str
    default: []
  present:
    description: >-
      Paths relative to each app's home, with shell patterns (C(releases/*/.shipped)), whose matches are listed: the
      markers of releases shipped whole and venvs built whole.
    type: list
    elements: str
    default: []
  runtime_root:
    description: >-
      The parent of the units' runtime directories (C(RuntimeDirectory=gunicorn/%i)), where a master that preloaded
      its app leaves a marker.
    type: path
    default: /run/gunicorn
  units_matching:
    description: >-
      Unit name patterns (as C(systemctl list-units) takes them) whose loaded units are listed: what a stopped run
      may have left running, such as its venv build.
    type: list
    elements: str
    default: []
author: gunicorn-suite
"""

RETURN = r"""
passwd:
  description: name -> [password, uid, gid, gecos, home, shell], as ansible.builtin.getent returns it.
  type: dict
  returned: always
group:
  description: name -> [password, gid, members].
  type: dict
  returned: always
root_dirs:
  description: The names of the directories directly under apps_root.
  type: list
  elements: str
  returned: always
root_markers:
  description: The names of the directories directly under apps_root that hold the marker.
  type: list
  elements: str
  returned: always
listeners:
  description: One entry per listening port, C(port) and C(units) (or process names) holding it.
  type: list
  elements: dict
  returned: always
apps:
  description: >-
    name -> {link, venv (each a stat as ansible.builtin.stat returns it: exists, path, islnk, isdir, lnk_target),
    found ([{path}], as ansible.builtin.find lists files), present (the paths matching C(present)),
    units ({socket, service} -> {active, enabled, failed}), preloaded (its running master preloaded the app: the
    marker gunicorn_conf.py writes in /run/gunicorn/NAME)}.
  type: dict
  returned: always
matching_units:
  description: The loaded units matching C(units_matching), in any state.
  type: list
  elements: str
  returned: always
"""

NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def link_stat(path: str) -> dict[str, object]:
    """What ansible.builtin.stat (follow: false) says of PATH, for the keys the role reads."""
    if not os.path.lexists(path):
        return {"exists": False}
    stat = {"exists": True, "path": path, "islnk": os.path.islink(path), "isdir": os.path.isdir(path)}
    if stat["islnk"]:
        stat["lnk_target"] = os.readlink(path)
        stat["isdir"] = False  # stat without follow describes the link itself
    return stat


def _entries(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def matching(directory: str, patterns: list[str]) -> list[str]:
    """The paths of the entries of DIRECTORY whose name matches one of PATTERNS."""
    return [
        os.path.join(directory, name)
        for name in _entries(directory)
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    ]


def marked_dirs(apps_root: str, marker: str) -> list[str]:
    """The names of the directories holding MARKER (a regular file): APPS_ROOT's children, or APPS_ROOT itself."""
    names = [os.path.basename(apps_root)] if _is_file(os.path.join(apps_root, marker)) else []
    for name in _entries(apps_root):
        top = os.path.join(apps_root, name)
        if os.path.isdir(top) and not os.path.islink(top) and _is_file(os.path.join(top, marker)):
            names.append(name)
    return names


def _is_file(path: str) -> bool:
    return os.path.isfile(path) and not os.path.islink(path)


def unit_states(show: str) -> dict[str, dict[str, bool]]:
    """{unit: {active, enabled, failed}} from `systemctl show -p Id,ActiveState,UnitFileState UNIT...`."""
    states = {}
    for block in show.strip().split("\n\n"):
        unit = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if unit.get("Id"):
            states[unit["Id"]] = {
                "active": unit.get("ActiveState") == "active",
                "enabled": unit.get("UnitFileState", "").startswith("enabled"),
                "failed": unit.get("ActiveState") == "failed",
            }
    return states


def loaded_units(listing: str) -> list[str]:
    """The unit names of `systemctl list-units --plain --no-legend` output (the first column; "" lists none)."""
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def main() -> None:
    """Read everything and return it; nothing on the host changes."""
    module = AnsibleModule(
        argument_spec={
            "apps_root": {"type": "path", "required": True},
            "marker": {"type": "str", "required": True},
            "names": {"type": "list", "elements": "str", "default": []},
            "found": {"type": "list", "elements": "str", "default": []},
            "present": {"type": "list", "elements": "str", "default": []},
            "runtime_root": {"type": "path", "default": RUNTIME_ROOT},
            "units_matching": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    root, patterns = module.params["apps_root"], module.params["found"]
    names = [name for name in module.params["names"] if NAME_RE.match(name)]
    systemctl = module.get_bin_path("systemctl")
    sockets, shown, loaded = "", "", ""
    units = [f"gunicorn@{name}.{kind}" for name in names for kind in ("socket", "service")]
    if systemctl:
        _, sockets, _ = module.run_command([systemctl, "list-sockets", "--all", "--full", "--no-legend", "--plain"])
        if units:
            _, shown, _ = module.run_command([systemctl, "show", "-p", "Id,ActiveState,UnitFileState", *units])
        if module.params["units_matching"]:
            listing = [systemctl, "list-units", "--all", "--full", "--no-legend", "--plain"]
            _, loaded, _ = module.run_command([*listing, "--", *module.params["units_matching"]])
    states = unit_states(shown)
    apps = {}
    for name in names:
        home = os.path.join(root, name)
        link = link_stat(os.path.join(home, "app"))
        serving = [os.path.join(home, "app")] if "lnk_target" in link else []  # the release, through its link
        apps[name] = {
            "link": link,
            "venv": link_stat(os.path.join(home, "venv")),
            "found": [{"path": path} for where in [home, *serving] for path in matching(where, patterns)],
            "present": sorted(
                path
                for pattern in module.params["present"]
                for path in glob.glob(os.path.join(glob.escape(home), pattern))
            ),
            "units": {
                kind: states.get(f"gunicorn@{name}.{kind}", {"active": False, "enabled": False, "failed": False})
                for kind in ("socket", "service")
            },
            "preloaded": _is_file(os.path.join(module.params["runtime_root"], name, PRELOADED_MARKER)),
        }
    module.exit_json(
        changed=False,
        passwd={
            entry.pw_name: ["x", str(entry.pw_uid), str(entry.pw_gid), entry.pw_gecos, entry.pw_dir, entry.pw_shell]
            for entry in pwd.getpwall()
        },
        group={entry.gr_name: ["x", str(entry.gr_gid), ",".join(entry.gr_mem)] for entry in grp.getgrall()},
        root_dirs=[
            n
            for n in _entries(root)
            if os.path.isdir(os.path.join(root, n)) and not os.path.islink(os.path.join(root, n))
        ],
        root_markers=marked_dirs(root, module.params["marker"]),
        listeners=listeners(sockets),
        apps=apps,
        matching_units=loaded_units(loaded),
    )


if __name__ == "__main__":
    main()
