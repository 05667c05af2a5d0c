"""An opaque secret value that never prints itself.

Pulumi hands a program secret config values as plaintext plus a list of secret keys; a stack file
read offline holds only ciphertext (``secure: v1:...``), which cannot be decrypted without the
stack's key. Both become a :class:`SecretValue`; only the Pulumi shell turns it into
``pulumi.Output.secret`` and nothing in the core ever formats the plaintext.
"""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

REDACTED = "[secret]"


class SecretValue:
    """A secret from stack config: plaintext when Pulumi decrypted it, else only its ciphertext."""

    __slots__ = ("_ciphertext", "_plaintext")

    def __init__(self, plaintext: str | None = None, ciphertext: str | None = None) -> None:
        if plaintext is None and ciphertext is None:
            raise ValueError("a secret needs a plaintext or a ciphertext")
        self._plaintext = plaintext
        self._ciphertext = ciphertext

    @property
    def is_decrypted(self) -> bool:
        return self._plaintext is not None

    @property
    def ciphertext(self) -> str | None:
        return self._ciphertext

    def reveal(self) -> str:
        """The plaintext, for the Pulumi shell to wrap in ``Output.secret``.

        Offline (ciphertext only) there is nothing to reveal: a stable placeholder keeps rendered
        files deterministic and obviously not a real key.
        """
        return self._plaintext if self._plaintext is not None else "PLACEHOLDER-encrypted-in-stack-file"

    def __repr__(self) -> str:
        return f"SecretValue({REDACTED})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SecretValue)
            and self._plaintext == other._plaintext
            and self._ciphertext == other._ciphertext
        )

    def __hash__(self) -> int:
        return hash((self._plaintext, self._ciphertext))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _v: REDACTED),
        )

    @classmethod
    def _coerce(cls, value: Any) -> SecretValue:
        if isinstance(value, SecretValue):
            return value
        if isinstance(value, dict) and set(value) == {"secure"} and isinstance(value["secure"], str):
            if not value["secure"].strip():
                # `secure: ''` decrypts to nothing: the stack would run with an empty key (or none).
                raise ValueError("an empty secret (`secure: ''`) is no key: set it with `pulumi config set --secret`")
            return cls(ciphertext=value["secure"])
        if isinstance(value, str) and value:
            if any(c in value for c in "\r\n\0"):
                # Secrets go into KEY=value files (docker --env-file): a newline would start another variable.
                raise ValueError("must be a single line (no newline or NUL)")
            return cls(plaintext=value)
        raise ValueError("must be a non-empty string set with `pulumi config set --secret`")
