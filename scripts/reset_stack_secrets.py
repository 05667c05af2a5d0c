"""Strip a stack file's shipped secrets so a first deploy can set its own (docs/ci.md, first deploy checklist).

The stack files in this repository carry an `encryptionsalt` and `secure:` ciphertexts made with a passphrase
nobody but their author knows: `pulumi up` would fail to decrypt them. This removes the salt and every
`secure:` value (comments and everything else stay as they are), and prints the `pulumi config set --secret`
command for each removed key. `pulumi stack init` then writes a salt for YOUR passphrase.

    python scripts/reset_stack_secrets.py dev        # edits Pulumi.dev.yaml in place
"""

import re
import sys
from pathlib import Path

import yaml

# `  gpu-inference:apiKey:` followed by `    secure: v1:...` (pulumi's own layout), or the inline flow form.
_BLOCK = re.compile(r"^(?P<indent>[ \t]*)(?P<key>[^\s#][^:\n]*(?::[^\s:\n]+)?):[ \t]*\n[ \t]+secure:[ \t]*\S+[ \t]*\n", re.M)
_INLINE = re.compile(r"^(?P<indent>[ \t]*)(?P<key>[^\s#][^:\n]*(?::[^\s:\n]+)?):[ \t]*\{[ \t]*secure:[^}\n]*\}[ \t]*\n", re.M)
_SALT = re.compile(r"^encryptionsalt:.*\n", re.M)


def reset(text: str) -> tuple[str, list[str], bool]:
    """The stack file without salt and secrets, the keys removed, and whether a salt was removed."""
    removed = [m.group("key") for m in _BLOCK.finditer(text)] + [m.group("key") for m in _INLINE.finditer(text)]
    out, salts = _SALT.subn("", _INLINE.sub("", _BLOCK.sub("", text)))
    return out, removed, salts > 0


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not re.fullmatch(r"[A-Za-z0-9_.-]+", argv[0]):
        print("usage: python scripts/reset_stack_secrets.py STACK", file=sys.stderr)
        return 2
    stack = argv[0]
    path = Path(__file__).resolve().parent.parent / f"Pulumi.{stack}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot read {path.name}: {exc.strerror}", file=sys.stderr)
        return 2
    out, removed, had_salt = reset(text)
    # The result must still be a stack file, with no ciphertext left anywhere.
    doc = yaml.safe_load(out) or {}
    if "secure:" in out or "encryptionsalt" in doc:
        print(f"error: {path.name} has a secret this script cannot strip safely; edit it by hand", file=sys.stderr)
        return 1
    path.write_text(out, encoding="utf-8")
    print(f"{path.name}: removed {'the encryptionsalt and ' if had_salt else ''}{len(removed)} secret value(s)")
    for key in removed:
        print(f"  set it again: pulumi config set --secret {key} <value> --stack {stack}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
