"""Helpers shared by CLI subcommands."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ClassNameError


def read_classnames(path: str) -> list[str]:
    """Class names from a file: a JSON list of strings, or one name per line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClassNameError(f"cannot read class-name file {path!r}: {exc}") from exc
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            names = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ClassNameError(f"{path!r} starts with '[' but is not valid JSON: {exc}") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ClassNameError(f"{path!r} must hold a JSON list of strings")
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]
