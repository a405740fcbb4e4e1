"""A small registry for the declaration, registry, inbox and venue tests.

Citizens in Phường Hoàn Kiếm (ward 70, where the web fixtures scope place-bound
officers) and Phường Ba Đình (ward 4, out of that scope), and an issuing key file.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import Engine

from aggregator.db.registry import CitizenRow, insert_citizens
from aggregator.web.settings_issue import IssueSettings
from contract.token import SigningKey

HOAN_KIEM = 70
BA_DINH = 4
AN_ID = "001090000001"
BINH_ID = "001085000002"
CHI_ID = "079195000003"


def citizen_rows() -> list[CitizenRow]:
    """Three citizens: two living in Hoàn Kiếm, one in Ba Đình."""
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def row(
        cid: int, ident: str, name: str, born: date, *, ward: int, temp: int | None
    ) -> CitizenRow:
        return CitizenRow(
            id=cid,
            identity_no=ident,
            full_name=name,
            date_of_birth=born,
            sex="male" if cid != 3 else "female",
            phone="0912345678",
            permanent_ward_code=ward,
            temporary_ward_code=temp,
            vaccine_doses=0,
            health_status="none",
            status_since=at,
            updated_at=at,
        )

    return [
        row(1, AN_ID, "Nguyễn Văn An", date(1990, 5, 17), ward=HOAN_KIEM, temp=None),
        row(2, BINH_ID, "Trần Thị Bình", date(1985, 2, 3), ward=BA_DINH, temp=HOAN_KIEM),
        row(3, CHI_ID, "Lê Thị Chi", date(1995, 11, 30), ward=BA_DINH, temp=None),
    ]


def load_citizens(engine: Engine) -> None:
    """Insert :func:`citizen_rows`."""
    with engine.begin() as conn:
        insert_citizens(conn, rows=citizen_rows())


def wire_app(app: FastAPI, key_dir: Path, **settings: int) -> SigningKey:
    """Issue passes with a fresh key saved under ``key_dir``."""
    key = SigningKey.generate(kid=7)
    path = key_dir / "signing-key.json"
    key.save(path)
    app.state.issue_settings = IssueSettings(signing_key_path=path, **settings)
    return key
