"""F-status updates: one by one (ward notice, deny-list revision) and by CSV (all or nothing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, select

from aggregator.auth.model import Officer, Scope
from aggregator.db.health_updates import StatusUpdate, apply_import, apply_update, check_import
from aggregator.db.registry import get_citizen_by_identity
from aggregator.db.schema import (
    HealthStatus,
    Role,
    audit_log,
    citizens,
    deny_list_revisions,
    ward_notifications,
)
from tests.fixtures.web import LoginFactory
from tests.registry_world import AN_ID, BA_DINH, BINH_ID, CHI_ID, HOAN_KIEM, load_citizens, wire_app

YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
ADMIN = Officer(id=1, username="a", full_name="A", role=Role.ADMIN, scopes=[])
POLICE = Officer(
    id=1,
    username="p",
    full_name="P",
    role=Role.WARD_POLICE,
    scopes=[Scope.parse(f"ward:{HOAN_KIEM}")],
)


@pytest.fixture
def world(web_app: FastAPI, web_engine: Engine, tmp_path: Any) -> Engine:
    load_citizens(web_engine)
    wire_app(web_app, tmp_path)
    return web_engine


def status_of(engine: Engine, identity: str) -> tuple[str, int]:
    with engine.connect() as conn:
        row = conn.execute(
            select(citizens.c.health_status, citizens.c.vaccine_doses).where(
                citizens.c.identity_no == identity
            )
        ).one()
    return row[0], row[1]


def notifications(engine: Engine) -> list[tuple[int, str, int]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    ward_notifications.c.ward_code,
                    ward_notifications.c.kind,
                    ward_notifications.c.citizen_id,
                ).order_by(ward_notifications.c.id)
            )
        ]


def revision(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.coalesce(func.max(deny_list_revisions.c.revision), 0))
        ).scalar_one()


# --- data functions (both backends) -----------------------------------------------------


def test_update_notifies_the_ward_of_temporary_residence(engine: Engine) -> None:
    load_citizens(engine)
    with engine.begin() as conn:
        binh = get_citizen_by_identity(conn, identity_no=BINH_ID)
        assert binh is not None
        body = StatusUpdate(identity_no=BINH_ID, status=HealthStatus.F0, since=YESTERDAY, doses=2)
        applied = apply_update(conn, citizen=binh, update_=body, officer=ADMIN)
        again = apply_update(
            conn,
            citizen=get_citizen_by_identity(conn, identity_no=BINH_ID),
            update_=body,
            officer=ADMIN,
        )  # type: ignore[arg-type]
    assert (
        applied.changed and applied.notified_ward == HOAN_KIEM
    )  # temporary, not permanent (Ba Đình)
    assert not again.changed and again.notified_ward is None
    assert status_of(engine, BINH_ID) == ("F0", 2)
    assert notifications(engine) == [(HOAN_KIEM, "status_change", 2)]
    with engine.begin() as conn:
        chi = get_citizen_by_identity(conn, identity_no=CHI_ID)
        assert chi is not None
        done = apply_update(
            conn,
            citizen=chi,
            update_=StatusUpdate(identity_no=CHI_ID, status="f1", since=YESTERDAY),
            officer=ADMIN,
        )
    assert done.notified_ward == BA_DINH and done.status is HealthStatus.F1


def test_import_check_reports_every_row_and_imports_nothing_on_error(engine: Engine) -> None:
    load_citizens(engine)
    data = (
        "identity_no,status,since,doses\n"
        f"{AN_ID},F0,{YESTERDAY},2\n"
        "001090999999,F1,2026-01-01,\n"
        f"{BINH_ID},F7,{YESTERDAY},1\n"
        f"{AN_ID},F1,{YESTERDAY},\n"
        f"{CHI_ID},recovered,2999-01-01,x\n"
    ).encode()
    with engine.connect() as conn:
        check = check_import(conn, data=data, officer=ADMIN)
    assert not check.ok and check.error_count == 4
    by_line = {r.line: [(f, k) for f, k, _ in r.problems] for r in check.rows}
    assert by_line[2] == []
    assert by_line[3] == [("identity_no", "registry.error.unknown_citizen")]
    assert by_line[4] == [("status", "error.choice")]
    assert by_line[5] == [("identity_no", "registry.import.error.repeated")]
    assert ("since", "registry.error.future") in by_line[6] and (
        "doses",
        "error.integer",
    ) in by_line[6]
    # pydantic's English never reaches the officer: the choices are listed in our words.
    (status_problem,) = next(r.problems for r in check.rows if r.line == 4)
    assert status_problem[2]["expected"].startswith("none, F0, ")
    with engine.begin() as conn, pytest.raises(ValueError, match="nothing imported"):
        apply_import(conn, check=check, officer=ADMIN)
    assert status_of(engine, AN_ID) == ("none", 0)


def test_import_applies_a_clean_file_in_one_go(engine: Engine) -> None:
    load_citizens(engine)
    data = (
        "\ufeffIdentity_No,Status,Since,Doses\n"
        f"{AN_ID},F0,{YESTERDAY},2\n"
        f"{CHI_ID},recovered,{YESTERDAY},\n"
        "\n"
    ).encode()
    with engine.begin() as conn:
        check = check_import(conn, data=data, officer=ADMIN)
        assert check.ok, [r.problems for r in check.rows]
        applied = apply_import(conn, check=check, officer=ADMIN)
    assert [a.status for a in applied] == [HealthStatus.F0, HealthStatus.RECOVERED]
    assert status_of(engine, AN_ID) == ("F0", 2)
    assert status_of(engine, CHI_ID) == ("recovered", 0)


def test_import_refuses_bad_files(engine: Engine) -> None:
    with engine.connect() as conn:
        assert (
            check_import(conn, data=b"\xff\xfe", officer=ADMIN).file_problems[0][0]
            == "registry.import.error.encoding"
        )
        assert (
            check_import(conn, data=b"id,state\n1,F0\n", officer=ADMIN).file_problems[0][0]
            == "registry.import.error.header"
        )
        assert (
            check_import(conn, data=b"identity_no,status,since\n", officer=ADMIN).file_problems[0][
                0
            ]
            == "registry.import.error.empty"
        )


def test_ward_police_import_only_their_residents(engine: Engine) -> None:
    load_citizens(engine)
    data = f"identity_no,status,since\n{BINH_ID},F1,{YESTERDAY}\n{CHI_ID},F1,{YESTERDAY}\n".encode()
    with engine.connect() as conn:
        check = check_import(conn, data=data, officer=POLICE)
    # Bình lives temporarily in Hoàn Kiếm; Chi only in Ba Đình.
    assert [[k for _, k, _ in r.problems] for r in check.rows] == [
        [],
        ["registry.error.out_of_scope"],
    ]


# --- routes ---------------------------------------------------------------------------------


def test_status_change_notifies_and_raises_the_denylist_revision(
    world: Engine, login_as: LoginFactory
) -> None:
    health = login_as(Role.HEALTH_OFFICIAL)
    before = revision(world)
    answer = health.send_json(
        "POST",
        "/api/registry/status",
        {"identity_no": AN_ID, "status": "F0", "since": YESTERDAY, "doses": 1},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["previous"] == "none" and body["status"] == "F0" and body["changed"] is True
    assert body["denylist_revision"] is not None and body["denylist_revision"] > before
    assert revision(world) > before
    assert notifications(world) == [(HOAN_KIEM, "status_change", 1)]
    with world.connect() as conn:
        assert conn.execute(
            select(audit_log.c.action).where(audit_log.c.action == "registry.status")
        ).first()
    same = health.send_json(
        "POST", "/api/registry/status", {"identity_no": AN_ID, "status": "F0", "since": YESTERDAY}
    )
    assert same.json()["changed"] is False and same.json()["denylist_revision"] is None


def test_status_route_refusals(world: Engine, login_as: LoginFactory, client: Any) -> None:
    body = {"identity_no": CHI_ID, "status": "F1", "since": YESTERDAY}
    assert client.post("/api/registry/status", json=body).status_code == 401
    officer = login_as(Role.CHECKPOINT_OFFICER)
    assert officer.send_json("POST", "/api/registry/status", body).status_code == 403
    police = login_as(Role.WARD_POLICE)
    assert police.send_json("POST", "/api/registry/status", body).status_code == 403  # Chi: Ba Đình
    assert status_of(world, CHI_ID) == ("none", 0)
    ok = police.send_json("POST", "/api/registry/status", {**body, "identity_no": BINH_ID})
    assert ok.status_code == 200
    unknown = police.send_json(
        "POST", "/api/registry/status", {**body, "identity_no": "001090999999"}
    )
    assert unknown.status_code == 404
    bad = police.send_json("POST", "/api/registry/status", {**body, "status": "F9"})
    assert bad.status_code == 422


def test_import_dry_run_then_import_over_http(world: Engine, login_as: LoginFactory) -> None:
    health = login_as(Role.HEALTH_OFFICIAL)
    good = f"identity_no,status,since,doses\n{AN_ID},F1,{YESTERDAY},2\n{BINH_ID},F0,{YESTERDAY},\n"
    headers = {"X-CSRF-Token": health.csrf, "Content-Type": "text/csv"}
    preview = health.client.post("/api/registry/import?dry_run=true", content=good, headers=headers)
    assert preview.status_code == 200, preview.text
    assert preview.json()["imported"] is False and preview.json()["rows"] == 2
    assert [line["full_name"] for line in preview.json()["lines"]] == [
        "Nguyễn Văn An",
        "Trần Thị Bình",
    ]
    assert status_of(world, AN_ID) == ("none", 0)
    bad = good + "001090999999,F1,2026-01-01,\n"
    refused = health.client.post("/api/registry/import", content=bad, headers=headers)
    assert refused.status_code == 422 and refused.json()["errors"] == 1
    assert refused.json()["lines"][2]["problems"][0]["type"] == "registry.error.unknown_citizen"
    assert status_of(world, AN_ID) == ("none", 0)  # nothing half-imported
    before = revision(world)
    done = health.client.post("/api/registry/import", content=good, headers=headers)
    assert (
        done.status_code == 200 and done.json()["imported"] is True and done.json()["changed"] == 2
    )
    assert status_of(world, AN_ID) == ("F1", 2) and status_of(world, BINH_ID) == ("F0", 0)
    assert revision(world) > before
    assert len(notifications(world)) == 2


def test_import_page_shows_the_report(world: Engine, login_as: LoginFactory) -> None:
    health = login_as(Role.HEALTH_OFFICIAL)
    assert health.client.get("/registry").status_code == 200
    bad = f"identity_no,status,since\n{AN_ID},F0,{YESTERDAY}\n001090999999,F1,{YESTERDAY}\n"
    page = health.client.post(
        "/registry/import",
        data={"csrf_token": health.csrf, "dry_run": "on"},
        files={"file": ("f0.csv", bad.encode(), "text/csv")},
    )
    assert page.status_code == 422
    assert "Không có công dân với số CCCD này." in page.text and 'id="import-table"' in page.text
    form = health.post_form(
        "/registry/status", {"identity_no": CHI_ID, "status": "deceased", "since": YESTERDAY}
    )
    assert form.status_code == 200 and 'id="registry-applied"' in form.text
    assert status_of(world, CHI_ID) == ("deceased", 0)
    assert login_as(Role.INVESTIGATOR).client.get("/registry").status_code == 403
