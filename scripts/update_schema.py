"""Rewrite schema.json (the component package's schema, inferred from the components' annotations)."""

from pathlib import Path

from components.package import schema_text

TARGET = Path(__file__).resolve().parent.parent / "schema.json"

if __name__ == "__main__":
    TARGET.write_text(schema_text(), encoding="utf-8")
    print(f"rewrote {TARGET}")
