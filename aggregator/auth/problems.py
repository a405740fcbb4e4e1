"""Validation problems that the screens show in the officer's language.

A :class:`Problem` names the field it is about and an :mod:`aggregator.web.i18n`
key; the page renders it in the chosen language, the JSON API and the CLI in
both ("tiếng Việt / English"). Pydantic errors of the API and form models are
turned into problems by :func:`from_validation_error`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from aggregator.web.i18n import Lang, has_key, t


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one field (``field`` empty: the form as a whole)."""

    field: str
    key: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def text(self, lang: Lang) -> str:
        """The message in ``lang``."""
        return t(self.key, lang).format(**self.params)

    def bilingual(self) -> str:
        """``"tiếng Việt / English"``, for the JSON API and the CLI."""
        return f"{self.text('vi')} / {self.text('en')}"

    def as_json(self) -> dict[str, Any]:
        """The problem as FastAPI reports a validation error (``loc``, ``msg``, ``type``)."""
        return {"loc": ["body", self.field], "msg": self.bilingual(), "type": self.key}


class ProblemError(ValueError):
    """Raised by data functions when the input breaks a rule; carries every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(p.bilingual() for p in self.problems))


def custom_error(key: str, **params: Any) -> PydanticCustomError:
    """A pydantic error whose type is an i18n key, for validators of API and form models."""
    return PydanticCustomError(key, "{key}", {"key": key, **params})


# pydantic's own error types with a message of ours (its messages are English only).
_KNOWN: dict[str, tuple[str, tuple[str, ...]]] = {
    "enum": ("error.choice", ("expected",)),
    "literal_error": ("error.choice", ("expected",)),
    "int_parsing": ("error.integer", ()),
    "int_from_float": ("error.integer", ()),
    "int_type": ("error.integer", ()),
    "float_parsing": ("error.number", ()),
    "float_type": ("error.number", ()),
    "date_parsing": ("error.date", ()),
    "date_from_datetime_parsing": ("error.date", ()),
    "date_type": ("error.date", ()),
    "string_too_long": ("error.too_long", ("max_length",)),
    "string_too_short": ("error.too_short", ("min_length",)),
    "greater_than_equal": ("error.at_least", ("ge",)),
    "less_than_equal": ("error.at_most", ("le",)),
}


def from_validation_error(exc: ValidationError) -> list[Problem]:
    """One problem per pydantic error; errors raised with :func:`custom_error` keep their key."""
    out = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"] if not isinstance(part, int)]
        name = loc[0] if loc else ""
        ctx = {k: v for k, v in (err.get("ctx") or {}).items() if k != "key"}
        if has_key(err["type"]):
            out.append(Problem(name, err["type"], ctx))
        elif err["type"] == "missing":
            out.append(Problem(name, "error.required"))
        elif err["type"] in _KNOWN:
            key, wanted = _KNOWN[err["type"]]
            params = {k: str(ctx.get(k, "")) for k in wanted}
            if "expected" in params:  # "'none', 'F0' or 'F1'": the "or" is English
                params["expected"] = params["expected"].replace("' or '", "', '").replace("'", "")
            out.append(Problem(name, key, params))
        else:
            out.append(Problem(name, "error.invalid", {"detail": err["msg"]}))
    return out
