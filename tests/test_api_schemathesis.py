"""Schemathesis against the aggregator's OpenAPI: no request gets a server error (5xx).

Every operation of ``/openapi.json`` is fuzzed in-process (ASGI) by
schemathesis' own fuzzing phase (schema-valid and schema-breaking data mixed),
twice: anonymously, and as an administrator's browser session (the
``kd_session`` cookie plus its ``X-CSRF-Token``, logged in through the real
login form). The fuzzer may end the session it uses (``DELETE
/api/auth/token``), deactivate or demote its own account, or change its
password: after each request to those operations the session is checked and,
if it is gone, a new administrator logs in, so every operation is really tried
with rights (the test checks that none only ever answered 401).

Examples per operation: ``KIEMDICH_FUZZ_EXAMPLES`` (default 15; a quarter for
the anonymous run, refused before any parameter is used), drawn from the seed
``KIEMDICH_FUZZ_SEED`` (fixed by default, so every run sends the same
requests). The database is the web fixtures' SQLite with the small registry of
``tests/registry_world.py`` and an issuing key, so declarations, look-ups and
registry updates reach their real code paths. The 5xx the fuzzer found are kept
as fixed cases in :data:`SEEN_AS_500`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case
from schemathesis.generation import derive_operation_seed
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from sqlalchemy import Engine

from aggregator.db.schema import Role
from aggregator.web.settings import WebSettings
from tests.conftest import Reliability
from tests.fixtures.web import LoginFactory, OfficerFactory, _client, login_form
from tests.registry_world import load_citizens, wire_app

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

EXAMPLES = int(os.environ.get("KIEMDICH_FUZZ_EXAMPLES", "15"))
# Operations through which the fuzzer can end its own session or take its account's rights.
SESSION_CHANGERS = ("/api/auth/", "/api/admin/officers")
# The same examples every run (a deterministic suite); another seed explores anew.
SEED = int(os.environ.get("KIEMDICH_FUZZ_SEED", "20251"))
# An endless event stream: each request is cut after this long (the read stays bounded).
STREAM_TIMEOUT_S = 0.5
REQUEST_TIMEOUT_S = 20.0
# /readyz answers 503 by design while the service is not started (it is not, here).
EXPECTED_5XX = {("GET", "/readyz"): 503}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def without_lifespan(app: FastAPI) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """``app`` for schemathesis' ASGI client, with the lifespan acknowledged but not run.

    The app's lifespan would start the aggregator service (broker, ingest);
    the routes only need its database, as in the other web tests.
    """

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return asgi


@pytest.fixture
def web_settings() -> WebSettings:
    """The fuzzer's failed logins (from the test client's one address) must not lock the
    administrator out: the per-address limit is raised; per-username limits stay."""
    return WebSettings(login_max_per_ip=1_000_000)


@dataclass
class AdminSession:
    """An administrator's browser session, renewed whenever the fuzzer ends it."""

    web_app: FastAPI
    make_officer: OfficerFactory
    cookie: str = ""
    csrf: str = ""
    renewed: int = 0

    def login(self) -> None:
        """A fresh administrator logs in through the login form."""
        account = self.make_officer(Role.ADMIN, username=f"fuzz-admin-{uuid.uuid4().hex[:8]}")
        # Not entered as a context manager: that would run the lifespan (start the service).
        browser = _client(self.web_app)
        try:
            answer = login_form(browser, account.username, account.password)
            assert answer.status_code == 303, answer.text[:500]
            self.cookie = str(browser.cookies.get("kd_session"))
            me = browser.get("/api/auth/me")
            assert me.status_code == 200, me.text
            self.csrf = me.json()["csrf_token"]
        finally:
            browser.close()

    def ensure(self) -> None:
        """Log in again if the session ended or the account lost its rights or scope."""
        browser = _client(self.web_app)
        try:
            me = browser.get("/api/auth/me", headers={"Cookie": f"kd_session={self.cookie}"})
        finally:
            browser.close()
        officer = me.json().get("officer") if me.status_code == 200 else None
        if not officer or officer["role"] != Role.ADMIN.value or officer["scopes"]:
            self.renewed += 1
            self.login()


@dataclass
class Outcome:
    """What one fuzzing run saw."""

    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    # operation -> status codes answered
    statuses: dict[str, set[int]] = field(default_factory=dict)

    def never_authenticated(self) -> list[str]:
        """Operations that answered nothing but 401 (the session never got through)."""
        return [op for op, codes in self.statuses.items() if codes <= {401}]


@pytest.fixture
def fuzz_app(web_app: FastAPI, web_engine: Engine, tmp_path: Path) -> FastAPI:
    """The app on a database with a few citizens, issuing passes with a test key."""
    load_citizens(web_engine)
    # The public form's per-address limit would answer 429 before the fuzzer's
    # declarations reach validation and the registry.
    wire_app(web_app, tmp_path, declare_max_per_ip=1_000_000)
    return web_app


def _sender(
    outcome: Outcome, session: AdminSession | None, *, timeout: float, expected: int | None
) -> Callable[[Case], None]:
    """The test body: send one generated request and note what it got."""

    def send(case: Case) -> None:
        outcome.requests += 1
        extra: dict[str, Any] = {}
        if session is not None:
            extra = {
                "cookies": {"kd_session": session.cookie},
                "headers": {"X-CSRF-Token": session.csrf},
            }
        try:
            response = case.call(timeout=timeout, **extra)
        # The ASGI transport re-raises what the app raised: that is a 500 to a client.
        except Exception as exc:  # noqa: BLE001
            outcome.server_errors.append(
                f"{case.operation.label}: {exc!r}\n{case.as_curl_command()}"
            )
        else:
            status = response.status_code
            outcome.statuses.setdefault(case.operation.label, set()).add(status)
            if status >= 500 and status != expected:
                outcome.server_errors.append(
                    f"{case.operation.label}: {status} {response.text[:300]}\n"
                    f"{case.as_curl_command()}"
                )
        if session is not None and case.operation.path.startswith(SESSION_CHANGERS):
            session.ensure()

    return send


def _fuzz(app: FastAPI, session: AdminSession | None, *, examples: int) -> Outcome:
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = without_lifespan(app)
    outcome = Outcome()
    for result in schema.get_all_operations():
        operation = result.ok()
        outcome.operations.append(operation.label)
        streaming = "text/event-stream" in str(operation.definition.raw.get("responses", {}))
        timeout = STREAM_TIMEOUT_S if streaming else REQUEST_TIMEOUT_S
        expected = EXPECTED_5XX.get((operation.method.upper(), operation.path))

        send = _sender(outcome, session, timeout=timeout, expected=expected)

        # Schemathesis' own fuzzing phase (what its CLI runs): positive and negative
        # data mixed, seeded per operation from one seed.
        test = create_test(
            operation=operation,
            test_func=send,
            config=HypothesisTestConfig(
                project=schema.config,
                modes=[HypothesisTestMode.FUZZING],
                seed=derive_operation_seed(SEED, operation.label),
                settings=settings(
                    max_examples=min(examples, 3) if streaming else examples,
                    deadline=None,
                    database=None,
                    # Report every distinct 5xx fast; shrinking adds nothing to a list of them.
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                ),
            ),
        )
        with contextlib.suppress(Unsatisfiable):  # nothing to generate (no parameters)
            test()
    return outcome


def _report(reliability: Reliability, who: str, outcome: Outcome) -> None:
    errors = len(outcome.server_errors)
    reliability(
        scenario=f"HTTP API fuzz, schemathesis ({who}): requests / answered < 500 / 5xx as lost",
        sent=outcome.requests,
        stored=outcome.requests - errors,
        duplicates=0,
        lost=errors,
    )


def test_no_operation_answers_a_server_error_to_the_anonymous(
    fuzz_app: FastAPI, reliability: Reliability
) -> None:
    # A stranger is refused before any parameter is used: fewer examples find as much.
    outcome = _fuzz(fuzz_app, None, examples=max(EXAMPLES // 4, 3))
    _report(reliability, "anonymous", outcome)
    assert len(outcome.operations) >= 40, outcome.operations
    assert not outcome.server_errors, "\n\n".join(outcome.server_errors)


def test_no_operation_answers_a_server_error_to_an_admin_session(
    fuzz_app: FastAPI, make_officer: OfficerFactory, reliability: Reliability
) -> None:
    session = AdminSession(fuzz_app, make_officer)
    session.login()
    outcome = _fuzz(fuzz_app, session, examples=EXAMPLES)
    _report(reliability, f"admin session, renewed {session.renewed}x", outcome)
    assert not outcome.server_errors, "\n\n".join(outcome.server_errors)
    # The session really carried rights: every operation got past authentication.
    assert outcome.never_authenticated() == []


BIG = 2**64  # beyond every id column (BIGINT)
SEEN_AS_500: list[tuple[str, str, dict[str, Any]]] = [
    # What the fuzzer found answering 500 before the routes bounded their input.
    ("GET", f"/api/alerts/{BIG}", {}),
    ("GET", f"/api/alerts/{BIG}/crop", {}),
    ("GET", f"/api/alerts?before={BIG}", {}),
    ("GET", f"/api/admin/officers/{BIG}", {}),
    ("PATCH", f"/api/admin/officers/{BIG}", {"json": {"full_name": "X Y"}}),
    ("GET", f"/admin/officers/{BIG}", {}),
    ("GET", f"/admin/audit?before={BIG}", {}),
    ("GET", "/admin/audit?since=9999-12-31", {}),
    ("GET", "/api/wards?q=%C2%B2", {}),  # "²" is a digit to str.isdigit, not to int()
    ("GET", f"/api/wards?q={BIG}", {}),
    ("GET", "/api/public/wards?q=%C2%B2", {}),
    ("GET", "/api/reports/daily?first_day=9999-12-31", {}),
    ("GET", "/api/reports/daily?first_day=0001-01-01", {}),
    (
        "GET",
        f"/api/trace/route?citizen_id={BIG}&since=2026-01-01T00:00&until=2026-01-02T00:00"
        "&purpose=kiểm tra",
        {},
    ),
    (
        "GET",
        "/api/trace/place?checkpoint_id=x&since=0001-01-01T00:00&until=0001-01-02T00:00"
        "&purpose=kiểm tra",
        {},
    ),
    (
        "POST",
        "/api/trace/contacts/mark-f1",
        {"json": {"source_citizen_id": BIG, "citizen_ids": [1]}},
    ),
    ("POST", "/api/inbox/handled", {"json": {"ids": [BIG]}}),
    ("POST", "/inbox/handled", {"data": {"id": ["²", str(BIG)]}}),
    ("GET", "/api/live/alerts", {"headers": {"Last-Event-ID": "²".encode("latin-1")}}),
    (
        "POST",
        "/api/declarations",
        {
            "json": {
                "identity_no": "001090000001",
                "full_name": "Nguyễn Văn An",
                "date_of_birth": "1990-05-17",
                "origin_ward_code": 2**70,
                "destination_ward_code": 4,
                "travel_date": "2026-01-01",
            }
        },
    ),
]


def test_inputs_that_once_answered_500_are_refused_as_invalid(
    fuzz_app: FastAPI, login_as: LoginFactory
) -> None:
    """The fuzzer's finds, kept as fixed cases: refused as invalid, or (a search) found nothing."""
    admin = login_as(Role.ADMIN)
    wrong = []
    for method, url, extra in SEEN_AS_500:
        headers = {"X-CSRF-Token": admin.csrf, **extra.get("headers", {})}
        kwargs = {k: v for k, v in extra.items() if k != "headers"}
        if "data" in kwargs:
            kwargs["data"] = {**kwargs["data"], "csrf_token": admin.csrf}
        answer = admin.client.request(method, url, headers=headers, **kwargs)
        if answer.status_code >= 500:
            wrong.append(f"{method} {url}: {answer.status_code} {answer.text[:200]}")
    assert not wrong, "\n".join(wrong)
