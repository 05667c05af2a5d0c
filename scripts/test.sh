#!/usr/bin/env bash
# README's test command: install everything (validators from Debian, Python deps into .venv),
# lint, then run every test, including the real validators and the real nginx/Prometheus data plane.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-validators.sh
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements-dev.txt
.venv/bin/ruff check .
# Type-checks the core and the program, including resource arguments passed straight to the provider SDKs'
# typed constructors (a misspelt argument name also fails the mocked program run in the tests).
.venv/bin/mypy
# Two workers: the machine has 2 cores; data-plane tests pick free loopback ports so they can run side by side.
.venv/bin/pytest -n 2 "$@"
