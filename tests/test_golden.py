"""The rendered files for the fixed dev/prod scenarios must equal tests/golden/** byte for byte.

A renderer change shows up here as a diff of what the machines would get. If the change is intended,
run `.venv/bin/python -m scripts.update_golden` and commit the golden files with it.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest
from render_fixtures import API_KEY, HF_TOKEN, SCENARIOS

GOLDEN = Path(__file__).resolve().parent / "golden"
FIX = "run `.venv/bin/python -m scripts.update_golden` and review/commit the diff"


def golden_files(name: str) -> dict[str, str]:
    base = GOLDEN / name
    return {p.relative_to(base).as_posix(): p.read_text() for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_files_match_golden(scenario: str) -> None:
    want = SCENARIOS[scenario]().render()
    have = golden_files(scenario)
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    assert not missing and not extra, f"golden/{scenario}: missing {missing}, unexpected {extra}; {FIX}"
    diffs = []
    for rel in sorted(want):
        if want[rel] != have[rel]:
            diffs.extend(difflib.unified_diff(
                have[rel].splitlines(keepends=True), want[rel].splitlines(keepends=True),
                fromfile=f"golden/{scenario}/{rel}", tofile=f"rendered/{scenario}/{rel}",
            ))  # fmt: skip
    assert not diffs, f"rendered output drifted from the golden files; {FIX}\n" + "".join(diffs)


# Every place a secret can sit in a rendered file, and the value it holds there.
_SECRET_SLOTS = [
    re.compile(r"VLLM_API_KEY=(\S*)"),
    re.compile(r"HF_TOKEN=(\S*)"),
    re.compile(r'"Bearer ([^"]*)"'),
    re.compile(r"--api-key[ =](\S+)"),
    re.compile(r"(?:api_?key|token|password|secret)\s*[:=]\s*['\"]?([^\s'\"]+)", re.IGNORECASE),
]


def test_golden_files_hold_only_placeholder_secrets() -> None:
    assert API_KEY.startswith("PLACEHOLDER-") and HF_TOKEN.startswith("PLACEHOLDER-")
    found = 0
    for path in sorted(GOLDEN.rglob("*")):
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            for slot in _SECRET_SLOTS:
                for match in slot.finditer(line):
                    value = match.group(1)
                    found += 1
                    assert value.startswith("PLACEHOLDER-") or value.startswith("$"), (
                        f"{path.relative_to(GOLDEN)}: {line.strip()!r} holds something that is not a placeholder"
                    )
    assert found, "expected the golden files to contain the placeholder secrets somewhere (env file, auth map)"
