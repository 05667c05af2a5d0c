"""`preview STACK`: what the Pulumi program would create, what it costs, and whether the policies pass.

Offline: the real `__main__.py` runs under recording mocks (no cloud account, no Pulumi CLI). Exit 0
when every mandatory policy passes, 1 when one fails, 2 on an invalid stack config (one message,
nothing listed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gpu_inference.bill import bill_table
from gpu_inference.clouds import CLOUDS
from gpu_inference.constants import HOURS_PER_MONTH, PROJECT_DIR


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "preview",
        help="run the Pulumi program under mocks: resources, monthly cost, policy verdicts, rendered files",
        description="Offline preview of STACK: the resources the program registers (secrets shown as [secret]), "
        "their monthly cost against the budget, the policy verdicts, and every machine file written to --out.",
    )
    p.add_argument("stack", metavar="STACK", help="stack name (dev → Pulumi.dev.yaml) or a stack file path")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument("--out", type=Path, metavar="DIR", help="where rendered files go (default build/STACK/)")
    p.add_argument("--no-files", action="store_true", help="render nothing to disk")


def run(args: argparse.Namespace) -> int:
    # Imported here: Pulumi is only needed once a preview actually runs.
    from gpu_inference.preview_runner import run_preview, stack_name_of

    out_dir = None if args.no_files else (args.out or PROJECT_DIR / "build" / stack_name_of(args.stack))
    report = run_preview(args.stack, out_dir)
    data = report.model_dump(mode="json")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_report(data)
    return report.exit_code


def _key_inputs(r: dict[str, Any]) -> str:
    inputs = r["inputs"]
    # DNS records: their zone (a domain, or a hosted zone id), name and the address they point at.
    keys = ("size", "instanceType", "region", "image", "ami", "cidrBlock", "availabilityZone", "domain", "zoneId",
            "name", "value", "records", "create")
    parts = [f"{k}={inputs[k]}" for k in keys if inputs.get(k) not in (None, "", [])]
    # Firewall-like resources: their inbound rules as each cloud module reads them (the security policy's view).
    ports = [port for cloud in CLOUDS.values() for port in cloud.open_ports(r["type"], inputs)]
    if ports:
        shown = [f"{p.low if p.low == p.high else f'{p.low}-{p.high}'}←{','.join((*p.sources, *p.peers))}" for p in ports]
        parts.append("in=[" + "; ".join(shown) + "]")
    parts += [f"{k}=[secret]" for k in r["secret_inputs"]]
    return " ".join(parts)


def print_report(data: dict[str, Any]) -> None:
    print(f"Preview of stack {data['stack']} ({data['stack_file']})")
    print(f"  {data['description']}\n")
    print(f"Resources ({len(data['resources'])}):")
    children: dict[str | None, list[dict[str, Any]]] = {}
    for r in data["resources"]:
        children.setdefault(r["parent"], []).append(r)

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            print(f"{'  ' * (depth + 1)}{r['type']}  {r['name']}  {_key_inputs(r)}".rstrip())
            walk(r["urn"], depth + 1)

    walk(None, 0)

    print(f"\nMonthly cost ({HOURS_PER_MONTH:.0f} h):")
    for row in bill_table(data["cost_lines"], data["monthly_cost_usd"], data["budget_usd"]):
        print(f"  {row}")

    print("\nSizing per node:")
    for s in data["sizing"]:
        print(f"  node-{s['node']}: {'fits' if s['fits'] else 'DOES NOT FIT'} on {s['gpus_per_node']}x {s['gpu']} "
              f"(TP {s['tensor_parallel_size']}): weights {s['weights_gib']} GiB, KV cache {s['kv_cache_gib']} GiB = "
              f"{s['kv_cache_tokens']:,} tokens, max concurrency {s['max_concurrency']:.1f} at max_model_len "
              f"{s['max_model_len']}")

    print("\nPolicies:")
    for v in data["policies"]:
        mark = "PASS" if v["passed"] else ("FAIL" if v["level"] == "mandatory" else "WARN")
        where = f" [{v['resource']}]" if v.get("resource") else ""
        print(f"  {mark} {v['name']} ({v['level']}){where}: {v['message']}")

    if data.get("notes"):  # absent from reports of revisions before the notes existed (cost-diff)
        print("\nNotes:")
        for note in data["notes"]:
            print(f"  NOTE {note}")

    print("\nOutputs:")
    for key, value in data["outputs"].items():
        print(f"  {key}: {json.dumps(value)}")
    if data["files"]:
        print(f"\nFiles written ({len(data['files'])}):")
        for path in data["files"]:
            print(f"  {path}")
    print(f"\nResult: {'OK' if data['exit_code'] == 0 else 'a mandatory policy failed'}")
