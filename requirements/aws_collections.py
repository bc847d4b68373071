"""Put the collections amazon.aws and community.aws under .cache/aws/collections, from PyPI's `ansible` package.

Why not ansible-galaxy: these machines reach PyPI and the distributions' mirrors only. The `ansible` package on PyPI
carries every community collection; the release paired with ansible-core 2.19 is 12.x. Only the two collections are
extracted (about 700 files of its 40,000), once, keyed by the package version.

    python requirements/aws_collections.py [--version 12.3.0] [--dest .cache/aws]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VERSION = "12.3.0"
WANTED = ("ansible_collections/amazon/aws/", "ansible_collections/community/aws/")


def fetch(version: str, dest: Path) -> Path:
    """Download the wheel (pip, no dependencies) and extract the two collections; reuse them when present."""
    collections = dest / "collections"
    stamp = collections / f".ansible-{version}"
    if stamp.exists():
        return collections
    wheels = dest / "pip"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"ansible=={version}", "-d", str(wheels)],
        check=True,
    )
    wheel = wheels / f"ansible-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(collections, [n for n in archive.namelist() if n.startswith(WANTED)])
    stamp.touch()
    return collections


def main() -> int:
    """Print the collections directory (what ansible.cfg's collections_path names)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=VERSION)
    parser.add_argument("--dest", type=Path, default=REPO / ".cache" / "aws")
    args = parser.parse_args()
    print(fetch(args.version, args.dest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
