"""Benchmarks of the suite: served throughput per core against the alternatives, scaling with cores, provisioning time.

`python -m bench --help` (or `make bench`) runs them; results land in bench/results/. Every module but chart.py uses the
standard library only, so the unit tests run in the tooling venv and the harness needs nothing but Python and wrk.
"""
