"""Builds the patched Meinheld wheel (see README.md); named so it never shadows the real `meinheld` module."""
