"""The balancer role's own HAProxy configuration (roles/balancer/templates/haproxy.cfg.j2), rendered outside Ansible.

The "suite via front" stack runs the distribution's HAProxy with this rendering, so the row measures the front the
roles deploy, not a configuration of the benchmark's. The values are the role's defaults (defaults/main.yml) with
what the front entry point sets (its one server on loopback, the app's old address) and what a process the harness
starts needs (no daemon: `haproxy -db`; its admin socket in the stack's scratch directory; no stats page). Plain HTTP:
the row prices the hop through HAProxy; what TLS costs is OpenSSL's, the same in front of any server.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROLE = Path(__file__).resolve().parent.parent / "roles" / "balancer"
TEMPLATE = "haproxy.cfg.j2"
_TRUE = {"true", "yes", "on", "1"}


def _bool(value: object) -> bool:
    """Ansible's `bool` filter, for the values a role's defaults hold (booleans, yes/no strings, numbers)."""
    return value if isinstance(value, bool) else str(value).strip().lower() in _TRUE


def role_defaults() -> dict[str, Any]:
    """The balancer role's defaults, as the role's users get them (every default has one place: that file)."""
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def render(overrides: Mapping[str, Any]) -> str:
    """haproxy.cfg.j2 with the role's defaults, then overrides; the role's computed vars must be among the overrides.

    balancer_https, balancer_acme and balancer_servers are computed by the role (tasks/main.yml, vars/main.yml); a
    caller gives them, and jinja2's StrictUndefined makes a missing one an error rather than an empty line.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        trim_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["bool"] = _bool
    values = {"ansible_managed": "rendered by bench/front.py", **role_defaults(), **overrides}
    return env.get_template(TEMPLATE).render(values)


def front_config(listen_port: int, backend: str, admin_socket: Path, name: str = "example") -> str:
    """The front's configuration on 127.0.0.1:listen_port before the app at backend, plain HTTP, no stats page."""
    return render(
        {
            "balancer_front_backend": backend,
            "balancer_front_name": name,
            "balancer_servers": [{"name": name, "address": backend}],
            "balancer_listen_address": "127.0.0.1",
            "balancer_listen_port": listen_port,
            "balancer_admin_socket": str(admin_socket),
            "balancer_stats_port": 0,
            "balancer_https": False,
            "balancer_acme": False,
        }
    )
