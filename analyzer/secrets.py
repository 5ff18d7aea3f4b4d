"""Secrets from environment variables or files (mounted Kubernetes Secrets).

Must not: log a secret's value; error messages name where a secret was looked for, never what
it holds.
"""

from __future__ import annotations

import os
from pathlib import Path

from analyzer.config import SecretRef


class SecretError(Exception):
    """A secret the rule refers to is not there."""


def resolve(ref: SecretRef) -> str:
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            raise SecretError(f"environment variable {ref.env} is not set or empty")
        return value.strip()
    assert ref.file is not None
    try:
        value = Path(ref.file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SecretError(f"cannot read secret file {ref.file}: {exc.strerror}") from None
    if not value:
        raise SecretError(f"secret file {ref.file} is empty")
    return value
