"""HTML forms: read the submitted fields, validate them with the API's models, show problems.

A field left blank counts as not given (its default, or "required"), so one
model serves the JSON API and the form. Problems are grouped by field for the
templates (``problems["lat"]``), the ones about the whole form under ``""``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from aggregator.auth.deps import CSRF_FIELD
from aggregator.auth.problems import Problem, from_validation_error

M = TypeVar("M", bound=BaseModel)

_LIST_SPLIT = re.compile(r"[\s,;]+")


async def form_fields(request: Request) -> dict[str, str]:
    """The submitted fields (first value of each; files ignored), without the CSRF token."""
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if key != CSRF_FIELD and isinstance(value, str) and key not in out:
            out[key] = value
    return out


def split_list(text: str) -> list[str]:
    """A textarea's items: one per line (commas and spaces also separate)."""
    return [item for item in _LIST_SPLIT.split(text) if item]


def validate(model: type[M], data: Mapping[str, Any]) -> tuple[M | None, list[Problem]]:
    """``model`` built from the form's non-blank fields, or the problems that prevent it."""
    given = {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
    try:
        return model.model_validate(given), []
    except ValidationError as exc:
        return None, from_validation_error(exc)


def by_field(problems: list[Problem]) -> dict[str, list[Problem]]:
    """Problems grouped by field name (``""``: the whole form)."""
    out: dict[str, list[Problem]] = defaultdict(list)
    for problem in problems:
        out[problem.field].append(problem)
    return dict(out)
