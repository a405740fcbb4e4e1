"""HTML forms: read the submitted fields, validate them with the API's models, show problems.

A field left blank counts as not given (its default, or "required"), so one
model serves the JSON API and the form. Problems are grouped by field for the
templates (``problems["lat"]``), the ones about the whole form under ``""``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, TypeVar

from annotated_types import Ge, Le
from fastapi import Request
from pydantic import BaseModel, ValidationError

from aggregator.auth.deps import CSRF_FIELD
from aggregator.auth.problems import Problem, from_validation_error

M = TypeVar("M", bound=BaseModel)

_LIST_SPLIT = re.compile(r"[\s,;]+")

ROW_ID_MAX = 2**63 - 1
WARD_CODE_MAX = 2**31 - 1
# Bigger numbers than the columns hold (BIGINT ids, INTEGER ward codes) and
# dates whose midnight in Vietnam falls outside Python's datetime range must be
# refused as invalid input (422), not reach the driver or the clock arithmetic (500).
RowId = Annotated[int, Ge(1), Le(ROW_ID_MAX)]
"""A table row id in a URL, a query or a body."""
WardCode = Annotated[int, Ge(1), Le(WARD_CODE_MAX)]
"""An administrative unit code."""
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2999, 12, 31)
Day = Annotated[date, Ge(FIRST_DAY), Le(LAST_DAY)]
"""A calendar day the reports and filters accept."""


async def form_fields(request: Request) -> dict[str, str]:
    """The submitted fields (first value of each; files ignored), without the CSRF token."""
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if key != CSRF_FIELD and isinstance(value, str) and key not in out:
            out[key] = value
    return out


def row_id(text: str) -> int | None:
    """A row id typed in a form (ASCII digits within :data:`ROW_ID_MAX`), else None."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(ROW_ID_MAX)):
        return None
    value = int(text)
    return value if 1 <= value <= ROW_ID_MAX else None


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
