"""Reading the JSON documents edgeseq writes (model card, bundle manifest), checked before use."""

from __future__ import annotations

import json
from pathlib import Path

from edgeseq.errors import ModelError


def read_document(path: str | Path, schema: str, required: tuple[str, ...], what: str) -> dict:
    """The JSON object at ``path``, if its ``schema`` matches and it has every ``required`` section."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {what} {path} ({exc})") from exc
    if not isinstance(document, dict) or document.get("schema") != schema:
        raise ModelError(f"{path} is not an edgeseq {what} (schema {schema!r} expected)")
    for key in required:
        if key not in document:
            raise ModelError(f"{what} {path} has no {key!r} section")
    return document
