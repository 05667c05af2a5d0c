"""Rewrite README.md's config-key table from the config models' docstrings."""

from __future__ import annotations

from pathlib import Path

from gpu_inference.config_docs import replace_section

README = Path(__file__).resolve().parent.parent / "README.md"

if __name__ == "__main__":
    README.write_text(replace_section(README.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"rewrote the config-key table in {README}")
