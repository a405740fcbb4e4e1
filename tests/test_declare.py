"""The health declaration: the public form, its validation, the pass and its QR, paper entry.

The QR the server draws is decoded back (zxing-cpp, and the edge agent's own
decoder) to the very token that verifies with the issuer's keyring.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import cv2
import numpy as np
import pytest
import zxingcpp
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from aggregator.auth.problems import ProblemError
from aggregator.db.declarations import (
    DeclarationInput,
    count_public_request,
    file_declaration,
    initials,
    public_wait_s,
)
from aggregator.db.schema import DeclarationSource, Role, audit_log, declarations
from aggregator.web.qr import qr_png, qr_svg
from contract.token import Keyring, SigningKey, verify_token
from edge.vision.decoders import make_decoder
from tests.fixtures.web import LoginFactory
from tests.registry_world import AN_ID, BA_DINH, HOAN_KIEM, load_citizens, wire_app

TOKEN_ATTR = re.compile(r'data-token="([^"]+)"')


def today() -> date:
    return datetime.now(UTC).astimezone().date()


def form(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "identity_no": "001 090 000 001",
        "full_name": "nguyen van an",
        "date_of_birth": "1990-05-17",
        "origin_ward_code": str(BA_DINH),
        "origin_detail": "12 Đội Cấn",
        "destination_ward_code": str(HOAN_KIEM),
        "travel_date": (today() + timedelta(days=1)).isoformat(),
        "symptoms": ["cough"],
    }
    data.update(over)
    return data


@pytest.fixture
def key(web_app: FastAPI, web_engine: Engine, tmp_path: Any) -> SigningKey:
    load_citizens(web_engine)
    return wire_app(web_app, tmp_path, declare_max_per_ip=5)


def gray_of(png: bytes) -> np.ndarray:
    gray = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert gray is not None, "not an image"
    return gray


def decode_png(png: bytes) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(gray_of(png))]


def edge_read(png: bytes) -> list[str]:
    return [d.text for d in make_decoder("zxing").decode(gray_of(png))]


# --- data functions (both backends) ----------------------------------------------------


def test_file_declaration_signs_a_pass_the_keyring_accepts(engine: Engine) -> None:
    load_citizens(engine)
    key = SigningKey.generate(kid=3)
    body = DeclarationInput.model_validate(form(contact_risk=True))
    with engine.begin() as conn:
        issued = file_declaration(
            conn, body=body, source=DeclarationSource.WEB, key=key, validity_hours=24
        )
    assert issued.initials == "N.V.A."
    verdict = verify_token(
        issued.token, Keyring([key.public()]), now=int(issued.valid_from.timestamp()) + 60
    )
    assert verdict.ok, verdict
    assert verdict.claims is not None and verdict.claims.declaration_id == issued.declaration_id
    with engine.connect() as conn:
        row = conn.execute(
            select(declarations).where(declarations.c.id == issued.declaration_id)
        ).one()
    assert row.citizen_id == 1 and row.source == "web" and row.entered_by is None
    assert row.symptoms == ["cough"] and row.contact_risk is True and row.key_id == 3
    assert row.origin_ward_code == BA_DINH and row.destination_ward_code == HOAN_KIEM
    assert row.expires_at - issued.valid_from == timedelta(hours=24)


def test_file_declaration_refuses_a_mismatch_and_unknown_wards(engine: Engine) -> None:
    load_citizens(engine)
    key = SigningKey.generate(kid=3)
    for wrong in (
        form(full_name="Nguyễn Văn Ân Khác"),
        form(date_of_birth="1990-05-18"),
        form(identity_no="001090999999"),
    ):
        with engine.begin() as conn, pytest.raises(ProblemError) as caught:
            file_declaration(
                conn,
                body=DeclarationInput.model_validate(wrong),
                source=DeclarationSource.WEB,
                key=key,
                validity_hours=24,
            )
        assert [p.key for p in caught.value.problems] == ["declare.error.no_match"]
    with engine.begin() as conn, pytest.raises(ProblemError) as caught:
        file_declaration(
            conn,
            body=DeclarationInput.model_validate(form(destination_ward_code="999999")),
            source=DeclarationSource.WEB,
            key=key,
            validity_hours=24,
        )
    assert [(p.field, p.key) for p in caught.value.problems] == [
        ("destination_ward_code", "declare.error.ward")
    ]
    with engine.connect() as conn:
        assert conn.execute(select(declarations.c.id)).first() is None


def test_paper_declarations_need_the_officer_and_web_ones_refuse_one(engine: Engine) -> None:
    load_citizens(engine)
    key = SigningKey.generate(kid=3)
    body = DeclarationInput.model_validate(form())
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="paper"):
            file_declaration(
                conn, body=body, source=DeclarationSource.PAPER, key=key, validity_hours=24
            )
        with pytest.raises(ValueError, match="paper"):
            file_declaration(
                conn,
                body=body,
                source=DeclarationSource.WEB,
                key=key,
                validity_hours=24,
                entered_by=1,
            )


def test_public_rate_limit_counts_per_address(engine: Engine) -> None:
    now = datetime(2026, 3, 1, 8, tzinfo=UTC)
    with engine.begin() as conn:
        for i in range(3):
            at = now + timedelta(seconds=i)
            assert (
                public_wait_s(
                    conn, bucket="declare", ip="10.0.0.1", window_s=60, max_requests=3, now=at
                )
                == 0
            )
            count_public_request(conn, bucket="declare", ip="10.0.0.1", window_s=60, now=at)
        wait = public_wait_s(
            conn,
            bucket="declare",
            ip="10.0.0.1",
            window_s=60,
            max_requests=3,
            now=now + timedelta(seconds=10),
        )
        assert wait == 50  # the first request leaves the window 60 s after it was made
        assert (
            public_wait_s(
                conn, bucket="declare", ip="10.0.0.2", window_s=60, max_requests=3, now=now
            )
            == 0
        )
        assert (
            public_wait_s(
                conn,
                bucket="declare",
                ip="10.0.0.1",
                window_s=60,
                max_requests=3,
                now=now + timedelta(seconds=61),
            )
            == 0
        )


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("identity_no", "00109000000", "declare.error.identity_format"),
        ("identity_no", "00109000000a", "declare.error.identity_format"),
        ("identity_no", "003090000001", "declare.error.identity_province"),
        ("identity_no", "097090000001", "declare.error.identity_province"),
        ("date_of_birth", "2999-01-01", "declare.error.birth_date"),
        ("travel_date", "2020-01-01", "declare.error.travel_date"),
        ("symptoms", ["fever", "sneezing"], "error.choice"),
    ],
)
def test_validation_names_the_field(field: str, value: Any, key: str) -> None:
    from aggregator.web.forms import validate

    body, problems = validate(DeclarationInput, form(**{field: value}))
    assert body is None
    assert [(p.field, p.key) for p in problems] == [(field, key)]


def test_initials_keep_vietnamese_letters() -> None:
    assert initials("Đặng  thị  Ánh") == "Đ.T.Á."


def test_qr_png_and_svg_hold_the_token(signing_key: SigningKey, make_token: Any) -> None:
    token = make_token()
    assert decode_png(qr_png(token)) == [token]
    assert edge_read(qr_png(token, scale=4)) == [token]
    svg = qr_svg(token)
    assert svg.startswith(b"<svg") and b"<path" in svg


# --- routes ------------------------------------------------------------------------------


def test_form_page_is_public(client: TestClient, key: SigningKey) -> None:
    page = client.get("/khai-bao")
    assert page.status_code == 200
    assert 'name="identity_no"' in page.text and "Khai báo y tế" in page.text
    assert client.get("/khai-bao?lang=en").text.count("Health declaration") >= 1


def test_filing_the_form_returns_a_pass_whose_qr_decodes_to_a_valid_token(
    client: TestClient, key: SigningKey, web_engine: Engine
) -> None:
    answer = client.post("/khai-bao", data=form())
    assert answer.status_code == 201, answer.text
    assert "N.V.A." in answer.text
    assert "Nguyễn" not in answer.text and AN_ID not in answer.text  # initials only
    token = TOKEN_ATTR.search(answer.text)
    assert token is not None
    text = token[1]
    png = client.get("/khai-bao/qr.png", params={"token": text})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert decode_png(png.content) == [text]
    assert edge_read(png.content) == [text]
    ring = Keyring([key.public()])
    verdict = verify_token(text, ring, now=int(datetime.now(UTC).timestamp()) + 86_400)
    assert verdict.ok, verdict
    svg = client.get("/khai-bao/qr.svg", params={"token": text})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    with web_engine.connect() as conn:
        assert conn.execute(select(declarations.c.source)).scalars().all() == ["web"]


def test_form_errors_are_shown_and_keep_the_input(client: TestClient, key: SigningKey) -> None:
    answer = client.post("/khai-bao", data=form(identity_no="12345", full_name="Nguyễn Văn An"))
    assert answer.status_code == 422
    assert "Số CCCD phải gồm đúng 12 chữ số." in answer.text
    assert 'value="Nguyễn Văn An"' in answer.text
    mismatch = client.post("/khai-bao", data=form(date_of_birth="1991-01-01"))
    assert mismatch.status_code == 422
    assert "không khớp" in mismatch.text


def test_a_typed_ward_name_with_one_match_is_taken_without_javascript(
    client: TestClient, key: SigningKey
) -> None:
    data = form(destination_q="Hoàn Kiếm")
    del data["destination_ward_code"]
    answer = client.post("/khai-bao", data=data)
    assert answer.status_code == 201, answer.text


def test_public_ward_search_ignores_diacritics(client: TestClient, key: SigningKey) -> None:
    found = client.get("/api/public/wards", params={"q": "hoan kiem"}).json()
    assert HOAN_KIEM in [w["code"] for w in found]
    assert client.get("/api/public/wards").json() == []


def test_qr_routes_refuse_what_is_not_a_pass(client: TestClient, key: SigningKey) -> None:
    assert client.get("/khai-bao/qr.png", params={"token": "hello"}).status_code == 400
    assert client.get("/khai-bao/qr.svg", params={"token": "KD1:###"}).status_code == 400


def test_json_api_files_and_refuses(client: TestClient, key: SigningKey) -> None:
    body = form()
    body["identity_no"] = AN_ID
    answer = client.post("/api/declarations", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["token"].startswith("KD1:") and answer.json()["source"] == "web"
    bad = client.post("/api/declarations", json={**body, "unexpected": 1})
    assert bad.status_code == 422


def test_public_form_is_rate_limited_per_address(client: TestClient, key: SigningKey) -> None:
    for _ in range(5):
        assert client.post("/khai-bao", data=form(full_name="x")).status_code == 422
    refused = client.post("/khai-bao", data=form())
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert client.post("/api/declarations", json=form()).status_code == 429


def test_without_a_signing_key_the_form_says_so(
    client: TestClient, key: SigningKey, web_app: FastAPI
) -> None:
    from aggregator.web.settings_issue import IssueSettings

    web_app.state.issue_settings = IssueSettings()
    answer = client.post("/khai-bao", data=form())
    assert answer.status_code == 503
    assert "khoá ký" in answer.text


def test_paper_entry_records_who_entered_it(
    login_as: LoginFactory, client: TestClient, key: SigningKey, web_engine: Engine
) -> None:
    officer = login_as(Role.CHECKPOINT_OFFICER)
    assert officer.client.get("/declarations/paper").status_code == 200
    answer = officer.post_form("/declarations/paper", form())
    assert answer.status_code == 201, answer.text
    assert TOKEN_ATTR.search(answer.text)
    api = officer.send_json("POST", "/api/declarations/paper", {**form(), "identity_no": AN_ID})
    assert api.status_code == 201 and api.json()["source"] == "paper"
    with web_engine.connect() as conn:
        rows = conn.execute(select(declarations.c.source, declarations.c.entered_by)).all()
        audited = (
            conn.execute(
                select(audit_log.c.action).where(audit_log.c.officer_id == officer.account.id)
            )
            .scalars()
            .all()
        )
    assert sorted(rows) == [("paper", officer.account.id)] * 2
    assert audited.count("declaration.paper") == 2


def test_paper_entry_refusals(login_as: LoginFactory, client: TestClient, key: SigningKey) -> None:
    assert client.get("/declarations/paper").status_code in (303, 307)
    assert client.post("/api/declarations/paper", json=form()).status_code == 401
    police = login_as(Role.WARD_POLICE)
    assert police.client.get("/declarations/paper").status_code == 403
    assert police.send_json("POST", "/api/declarations/paper", form()).status_code == 403
    officer = login_as(Role.CHECKPOINT_OFFICER)
    no_csrf = officer.client.post("/declarations/paper", data=form())
    assert no_csrf.status_code == 403
