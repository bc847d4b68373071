"""The default app: what the suite serves when the operator names none, as the Docker image's default app does."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    """Answer the greeting the image's default app answers, so a fresh host is visibly working."""
    return "Hello World from Flask"
