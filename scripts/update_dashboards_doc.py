#!/usr/bin/env python3
"""Rewrite docs/dashboards.md from the dashboard specs (gpu_inference/render/dashboards.py).

    .venv/bin/python -m scripts.update_dashboards_doc   # from the repo root

tests/test_dashboards.py fails when the committed file differs from what this writes.
"""

from __future__ import annotations

from pathlib import Path

from gpu_inference.render.dashboards import dashboards_markdown
from tests.render_fixtures import dev

DOC = Path(__file__).resolve().parent.parent / "docs" / "dashboards.md"


def expected() -> str:
    # The dev scenario: the default monitoring thresholds, as the golden files show them.
    return dashboards_markdown(dev().stack)


if __name__ == "__main__":
    DOC.write_text(expected(), encoding="utf-8")
    print(f"rewrote {DOC}")
