"""The app the reliability tests deploy: the example app plus a version marker and a way to leak memory on purpose.

The tests copy this directory, write the release's VERSION into version.txt and, for the broken releases, break it.
"""

from pathlib import Path

from flask import Flask, request

VERSION = (Path(__file__).parent / "version.txt").read_text().strip()
app = Flask(__name__)
_leaked: list[bytes] = []


@app.route("/")
def hello() -> str:
    """The example app's answer, with the release it came from."""
    return f"Hello World from Flask {VERSION}"


@app.route("/leak")
def leak() -> str:
    """Keep MB megabytes more in this worker, as a leaking app would (the worker memory limit must catch it)."""
    megabytes = int(request.args.get("mb", "32"))
    _leaked.append(b"x" * megabytes * 2**20)
    return f"holding {len(_leaked) * megabytes} MiB"
