"""Rewrite components/args.py (the components' TypedDict args) from the config models."""

from pathlib import Path

from gpu_inference.config_docs import component_args_source

TARGET = Path(__file__).resolve().parent.parent / "components" / "args.py"

if __name__ == "__main__":
    TARGET.write_text(component_args_source(), encoding="utf-8")
    print(f"rewrote {TARGET}")
