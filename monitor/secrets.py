"""Secrets referenced from the environment.

A secret in ``config.toml`` is written as ``"${ENV_NAME}"``; the literal value
never sits in the file. :class:`Secret` keeps the resolved value out of every
``repr``/``str`` so it cannot leak into logs or ``check-config`` output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class SecretError(ValueError):
    """A secret field is not an environment reference, or the variable is unset."""


class Secret:
    """A value resolved from an environment variable; masked when printed."""

    __slots__ = ("_value", "env")

    def __init__(self, env: str, value: str) -> None:
        self.env = env
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(${{{self.env}}}=***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.env == self.env and other._value == self._value

    def __hash__(self) -> int:
        return hash(self.env)


def resolve_secret(raw: object, environ: Mapping[str, str] | None = None) -> Secret:
    """Turn ``"${NAME}"`` into a :class:`Secret` read from ``environ``.

    >>> resolve_secret("${TOKEN}", {"TOKEN": "s3cr3t"})
    Secret(${TOKEN}=***)
    >>> resolve_secret("s3cr3t", {})
    Traceback (most recent call last):
    ...
    monitor.secrets.SecretError: secrets must come from the environment: write "${ENV_NAME}", not the value
    """
    env = os.environ if environ is None else environ
    if not isinstance(raw, str):
        raise SecretError(f'expected a string "${{ENV_NAME}}", got {type(raw).__name__}')
    match = _REF.match(raw)
    if match is None:
        raise SecretError(
            'secrets must come from the environment: write "${ENV_NAME}", not the value'
        )
    name = match.group(1)
    value = env.get(name)
    if value is None or value == "":
        raise SecretError(f"environment variable {name} is not set")
    return Secret(name, value)
