"""Entry point the Pulumi CLI runs for `pulumi preview --policy-pack policies`: builds the pack and serves it.

Constructing PolicyPack starts the analyzer's gRPC server and blocks, which is why it happens only
here and the policies live in the importable ``gpu_inference_policies`` module.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The pack runs from policies/ in its own virtualenv; the rules live in the repo's gpu_inference
# package one directory up, so put the repo root (and this directory) on the path.
_HERE = Path(__file__).resolve().parent
for _path in (_HERE.parent, _HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from gpu_inference_policies import PACK_NAME, POLICIES  # noqa: E402
from pulumi_policy import PolicyPack  # noqa: E402

PolicyPack(name=PACK_NAME, policies=POLICIES)
