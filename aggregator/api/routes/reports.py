"""Daily in/out statistics: the printable page, JSON, and CSV/XLSX exports.

``GET /reports/daily?first_day=&last_day=``     the page (date pickers, print CSS)
``GET /api/reports/daily``                      the same figures as JSON
``GET /api/reports/daily.csv``   one table (``table=checkpoints|hours|wards|provinces``)
``GET /api/reports/daily.xlsx``                 every table, one sheet each

Who: the command centre, ward police and administrators. Ward police (and any
scoped account) see only the checkpoints of their scope (their wards'). The
figures are counts, not personal data, so reads are not audited. Days are
Vietnam days; without ``first_day`` the report is today's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from aggregator.api.routes.alerts import EngineDep, refuse
from aggregator.auth.audit import LOCAL_TZ
from aggregator.auth.deps import Officer, require_roles
from aggregator.db.places import checkpoint_places
from aggregator.db.reports import DailyReport, ReportInputError, daily_report
from aggregator.db.schema import Role
from aggregator.web.exports import Sheet, csv_bytes, download, xlsx_bytes
from aggregator.web.forms import Day
from aggregator.web.i18n import Lang, request_lang, t
from aggregator.web.templating import register_nav, render

router = APIRouter(tags=["reports"])

REPORT_ROLES = (Role.COMMAND_CENTRE, Role.WARD_POLICE, Role.ADMIN)
Reporter = Annotated[Officer, Depends(require_roles(*REPORT_ROLES))]
register_nav("/reports/daily", "nav.reports", set(REPORT_ROLES), order=50)

Table = Literal["checkpoints", "hours", "wards", "provinces"]


def _today() -> date:
    return datetime.now(LOCAL_TZ).date()


def _report(engine: EngineDep, officer: Officer, first: date, last: date) -> DailyReport:
    with engine.connect() as conn:
        scope = None if officer.unrestricted else officer.checkpoint_filter()
        places = checkpoint_places(conn, scope=scope)
        try:
            return daily_report(conn, first_day=first, last_day=last, places=places)
        except ReportInputError as exc:
            raise refuse(400, "bad_days", "report.error.days", why=str(exc)) from exc


def _days(first_day: date | None, last_day: date | None) -> tuple[date, date]:
    first = first_day or _today()
    return first, last_day or first


FirstDay = Annotated[Day | None, Query(description="first day (Vietnam), default today")]
LastDay = Annotated[Day | None, Query(description="last day included, default first_day")]


@router.get("/reports/daily", response_class=HTMLResponse, include_in_schema=False)
async def daily_page(
    request: Request,
    officer: Reporter,
    engine: EngineDep,
    first_day: FirstDay = None,
    last_day: LastDay = None,
) -> HTMLResponse:
    """The printable report page."""
    first, last = _days(first_day, last_day)
    report = await run_in_threadpool(_report, engine, officer, first, last)
    return render(
        request,
        "report_daily.html",
        {
            "report": report,
            "scoped": not officer.unrestricted,
            "generated_at": datetime.now(LOCAL_TZ).strftime("%Y-%m-%d %H:%M"),
        },
        officer=officer,
    )


@router.get("/api/reports/daily")
def daily_json(
    officer: Reporter, engine: EngineDep, first_day: FirstDay = None, last_day: LastDay = None
) -> DailyReport:
    """The report's figures."""
    first, last = _days(first_day, last_day)
    return _report(engine, officer, first, last)


def _tables(report: DailyReport, lang: Lang) -> dict[Table, Sheet]:
    n_in, n_out, n_flag = t("report.in", lang), t("report.out", lang), t("report.flagged", lang)
    return {
        "checkpoints": (
            t("report.by_checkpoint", lang),
            [
                t("report.day", lang),
                t("trace.col.checkpoint_id", lang),
                t("trace.col.checkpoint", lang),
                t("trace.col.ward", lang),
                t("report.province", lang),
                n_in,
                n_out,
                n_flag,
            ],
            [
                [
                    r.day,
                    r.checkpoint_id,
                    r.checkpoint_name,
                    r.ward_name,
                    r.province_name,
                    r.counts.passages_in,
                    r.counts.passages_out,
                    r.counts.flagged,
                ]
                for r in report.by_checkpoint_day
            ],
        ),
        "hours": (
            t("report.by_hour", lang),
            [
                t("report.day", lang),
                t("report.hour", lang),
                t("trace.col.checkpoint_id", lang),
                n_in,
                n_out,
                n_flag,
            ],
            [
                [
                    r.day,
                    r.hour,
                    r.checkpoint_id,
                    r.counts.passages_in,
                    r.counts.passages_out,
                    r.counts.flagged,
                ]
                for r in report.by_checkpoint_hour
            ],
        ),
        "wards": (
            t("report.by_ward", lang),
            [
                t("trace.col.ward", lang),
                t("report.province", lang),
                t("report.checkpoints", lang),
                n_in,
                n_out,
                n_flag,
            ],
            [
                [
                    r.name,
                    r.province_name,
                    r.checkpoints,
                    r.counts.passages_in,
                    r.counts.passages_out,
                    r.counts.flagged,
                ]
                for r in report.by_ward
            ],
        ),
        "provinces": (
            t("report.by_province", lang),
            [t("report.province", lang), t("report.checkpoints", lang), n_in, n_out, n_flag],
            [
                [
                    r.name,
                    r.checkpoints,
                    r.counts.passages_in,
                    r.counts.passages_out,
                    r.counts.flagged,
                ]
                for r in report.by_province
            ],
        ),
    }


def _stem(report: DailyReport) -> str:
    if report.first_day == report.last_day:
        return f"bao-cao-{report.first_day:%Y%m%d}"
    return f"bao-cao-{report.first_day:%Y%m%d}-{report.last_day:%Y%m%d}"


@router.get("/api/reports/daily.csv")
def daily_csv(
    request: Request,
    *,
    officer: Reporter,
    engine: EngineDep,
    first_day: FirstDay = None,
    last_day: LastDay = None,
    table: Table = "checkpoints",
) -> Response:
    """One of the report's tables as CSV (UTF-8 with BOM)."""
    first, last = _days(first_day, last_day)
    report = _report(engine, officer, first, last)
    _title, header, rows = _tables(report, request_lang(request))[table]
    return download(csv_bytes(header, rows), filename=f"{_stem(report)}-{table}.csv", fmt="csv")


@router.get("/api/reports/daily.xlsx")
def daily_xlsx(
    request: Request,
    officer: Reporter,
    engine: EngineDep,
    first_day: FirstDay = None,
    last_day: LastDay = None,
) -> Response:
    """Every table of the report as an XLSX workbook, one sheet each."""
    first, last = _days(first_day, last_day)
    report = _report(engine, officer, first, last)
    sheets: Sequence[Sheet] = list(_tables(report, request_lang(request)).values())
    return download(xlsx_bytes(sheets), filename=f"{_stem(report)}.xlsx", fmt="xlsx")
