"""Subcommands of `python -m gpu_inference`; each module has add_parser(subparsers) and run(args) -> int."""
