"""The default app: what the suite serves when the operator names none, as the Docker image's default app does."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    """Answer the greeting the image's default app answers, so a fresh host is visibly working."""
    return "Hello World from Flask"


@app.route("/client")
def client() -> object:
    """Say who the app believes asked, and how: behind a balancer, what FORWARDED_ALLOW_IPS lets it believe."""
    return jsonify(remote_addr=request.remote_addr, scheme=request.scheme)
