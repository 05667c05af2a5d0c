"""`smoke --endpoint URL --model NAME`: does the deployed endpoint really serve the model? (issue 14)

Flags and JSON keys are fixed (the program's pulumi-command step and CI call it): --endpoint, --api-key (else
GPU_INFERENCE_API_KEY; never echoed), --model, --timeout, --json with keys ok, endpoint, model, ttft_ms,
total_ms, attempts, error. Exit 0 when served, 1 with one line when not (key rejected, model not served,
timeout, malformed response), 2 on invalid input (bad URL, timeout not a positive finite number).
Progress lines go to stderr only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from gpu_inference.constants import SMOKE_TIMEOUT_SECONDS
from gpu_inference.smoke import API_KEY_ENV, SmokeInputError, SmokeResult, run_smoke, validate_timeout


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "smoke",
        help="wait until a deployed endpoint serves the model, then time one streaming chat completion",
        description="Poll GET ENDPOINT/models until it lists MODEL (503 and connection errors mean still "
        "loading), then send one short streaming chat completion and report time to first token and total.",
    )
    p.add_argument("--endpoint", required=True, metavar="URL",
                   help="the OpenAI base URL, e.g. the stack output `endpoint` (http://203.0.113.10/v1)")
    p.add_argument("--api-key", metavar="KEY", default=None,
                   help=f"Bearer key (default: ${API_KEY_ENV}); never printed")
    p.add_argument("--model", required=True, metavar="NAME",
                   help="the served model name (servedModelName, else the model id)")
    p.add_argument("--timeout", default=str(SMOKE_TIMEOUT_SECONDS), metavar="SECONDS",
                   help=f"total wait in seconds (default {SMOKE_TIMEOUT_SECONDS:g}: a 70B download)")
    p.add_argument("--json", action="store_true",
                   help="print {ok, endpoint, model, ttft_ms, total_ms, attempts, error} on stdout")


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SmokeInputError(f"--timeout {text!r} is not a number of seconds") from None
    return validate_timeout(value)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    try:
        result = run_smoke(args.endpoint, args.model, api_key, _timeout(args.timeout),
                           progress=_progress if sys.stderr.isatty() else None)
    except SmokeInputError as exc:
        if args.json:
            invalid = SmokeResult(ok=False, endpoint=args.endpoint, model=args.model, ttft_ms=None, total_ms=None,
                                  attempts=0, error=str(exc))
            print(json.dumps(invalid.to_json()))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json()))
    if result.ok:
        if not args.json:
            print(result.summary())
        return 0
    print(result.summary(), file=sys.stderr)
    return 1
