"""What a change does to each stack's monthly bill, policy verdicts and sizing (the pull-request comment).

- ``diff``: two preview reports of a stack → the diff model (pure);
- ``markdown``: the diff as the PR comment or as JSON (pure);
- ``revisions``: previews of two git revisions or two stack files → the diff (runs git and the previews).

``python -m gpu_inference cost-diff`` (``gpu_inference.commands.cost_diff``) only parses flags.
"""

from gpu_inference.cost_diff.diff import (
    CostDiff,
    PolicyChange,
    ResourceDelta,
    Side,
    SizingChange,
    StackDiff,
    build_diff,
    diff_stack,
)
from gpu_inference.cost_diff.markdown import MARKER, render_markdown, to_json
from gpu_inference.cost_diff.revisions import (
    PreviewFn,
    UsageError,
    diff_files,
    diff_revisions,
    exit_code,
    run_preview_subprocess,
)

__all__ = [
    "MARKER",
    "CostDiff",
    "PolicyChange",
    "PreviewFn",
    "ResourceDelta",
    "Side",
    "SizingChange",
    "StackDiff",
    "UsageError",
    "build_diff",
    "diff_files",
    "diff_revisions",
    "diff_stack",
    "exit_code",
    "render_markdown",
    "run_preview_subprocess",
    "to_json",
]
