#!/usr/bin/python
"""Ansible module: list the TCP ports in LISTEN state on the host and the systemd units that hold them (read-only)."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wsgiops.meinheld_gunicorn.plugins.module_utils.listeners import listeners

DOCUMENTATION = r"""
module: gunicorn_listeners
short_description: List listening TCP ports and the systemd units holding them
description:
  - Reads /proc/net/tcp and /proc/net/tcp6, maps each listening socket to its processes and their systemd unit.
  - Changes nothing; the app role uses it to refuse a port another service already holds.
options: {}
author: gunicorn-suite
"""

RETURN = r"""
listeners:
  description: One entry per listening port, with the units (or process names) holding it.
  type: list
  elements: dict
  returned: always
"""


def main() -> None:
    """Run the module."""
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    systemctl = module.get_bin_path("systemctl")
    sockets = ""
    if systemctl:
        _, sockets, _ = module.run_command([systemctl, "list-sockets", "--all", "--full", "--no-legend", "--plain"])
    module.exit_json(changed=False, listeners=listeners(sockets))


if __name__ == "__main__":
    main()
