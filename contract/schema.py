"""Export the wire messages' JSON Schemas (``docs/schemas/``) for other implementers."""

from __future__ import annotations

import json
from pathlib import Path

from contract.messages import WIRE_MODELS


def render() -> dict[str, str]:
    """File name -> JSON Schema text, one per wire message."""
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False)
        + "\n"
        for name, model in WIRE_MODELS.items()
    }


def export(outdir: Path) -> list[Path]:
    """Write every schema into ``outdir``; returns the paths written."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = outdir / name
        path.write_text(text)
        written.append(path)
    return written
