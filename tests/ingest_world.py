"""A small, fully known world for the ingest tests: a checkpoint, its gates, citizens, passes.

Used by tests/test_ingest_*.py (not a fixture plugin: the tests call
:func:`build_world` with their own engine and signing key).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import base45
from sqlalchemy import Engine

from aggregator.db.fleet import add_device, upsert_checkpoint
from aggregator.db.registry import CitizenRow, DeclarationRow, insert_citizens, insert_declarations
from aggregator.db.schema import HealthStatus
from contract.ids import new_event_id
from contract.messages import Direction, ScanEvent, encode
from contract.token import HOUR, PREFIX, SigningKey, issue_token

HOAN_KIEM = 70  # Phường Hoàn Kiếm, Hà Nội: the checkpoint's ward and everyone's origin
BEN_THANH = 26743  # Phường Bến Thành, TP Hồ Chí Minh: destination
BA_DINH = 4  # a temporary residence
CHECKPOINT = "cp-phap-van"
OTHER_CHECKPOINT = "cp-bac-thang-long"
GATES = ("gate-pv-1", "gate-pv-2")
OTHER_GATE = "gate-btl-1"
DEVICE_PASSWORD = "gate-secret-1"


@dataclass
class Person:
    """A citizen with one declaration and its pass token."""

    citizen_id: int
    declaration_id: int
    status: HealthStatus
    doses: int
    token: str
    temporary_ward: int | None


@dataclass
class World:
    """What :func:`build_world` put in the database."""

    key: SigningKey
    people: dict[str, Person] = field(default_factory=dict)
    _seqs: dict[str, itertools.count[int]] = field(default_factory=dict)

    def next_seq(self, device_id: str) -> int:
        """The gate's next sequence number (each gate counts from 1)."""
        return next(self._seqs.setdefault(device_id, itertools.count(1)))

    def scan(
        self,
        token: str,
        *,
        device_id: str = GATES[0],
        checkpoint_id: str = CHECKPOINT,
        seq: int | None = None,
        seen_at: datetime | None = None,
        event_id: UUID | None = None,
        crop: bytes | None = None,
        direction: Direction = Direction.IN,
    ) -> ScanEvent:
        """A scan event as a gate would publish it."""
        return ScanEvent(
            event_id=event_id or new_event_id(),
            device_id=device_id,
            checkpoint_id=checkpoint_id,
            lane=0,
            direction=direction,
            seq=self.next_seq(device_id) if seq is None else seq,
            seen_at=seen_at or datetime.now(UTC),
            token=token,
            decoder="zxing",
            quality=0.9,
            crop_jpeg=crop,
        )


PEOPLE: dict[str, tuple[HealthStatus, int, int | None]] = {
    # name: (status, vaccine doses, temporary ward)
    "an": (HealthStatus.NONE, 2, None),
    "binh": (HealthStatus.NONE, 1, BA_DINH),
    "f0": (HealthStatus.F0, 2, None),
    "f0_tam_tru": (HealthStatus.F0, 0, BA_DINH),
    "f1": (HealthStatus.F1, 2, None),
    "f2": (HealthStatus.F2, 2, None),
    "recovered": (HealthStatus.RECOVERED, 1, None),
    "deceased": (HealthStatus.DECEASED, 0, None),
    "revoked": (HealthStatus.NONE, 2, None),
}


def build_world(engine: Engine, key: SigningKey, *, now: datetime | None = None) -> World:
    """Register the checkpoints and gates and the people of :data:`PEOPLE` with passes."""
    now = now or datetime.now(UTC)
    issued = int(now.timestamp()) - HOUR
    world = World(key)
    citizens: list[CitizenRow] = []
    declarations: list[DeclarationRow] = []
    for i, (name, (status, doses, temporary)) in enumerate(PEOPLE.items(), start=1):
        declaration_id = 1_000_000 + i
        citizens.append(
            {
                "id": i,
                "identity_no": f"001090{i:06d}",
                "full_name": f"Nguyễn Văn {name.title()}",
                "date_of_birth": date(1990, 1, 1),
                "sex": "male",
                "phone": f"0912{i:06d}",
                "permanent_ward_code": HOAN_KIEM,
                "temporary_ward_code": temporary,
                "vaccine_doses": doses,
                "health_status": status.value,
                "status_since": now - timedelta(days=3),
                "updated_at": now - timedelta(days=3),
            }
        )
        declarations.append(
            {
                "id": declaration_id,
                "citizen_id": i,
                "origin_ward_code": HOAN_KIEM,
                "destination_ward_code": BEN_THANH,
                "origin_detail": "Số 1 Hàng Bạc",
                "destination_detail": "Số 5 Lê Lợi",
                "symptoms": [],
                "contact_risk": False,
                "source": "app",
                "entered_by": None,
                "key_id": key.kid,
                "created_at": now - timedelta(hours=2),
                "expires_at": now + timedelta(days=7),
                "revoked_at": now - timedelta(hours=1) if name == "revoked" else None,
            }
        )
        token = issue_token(
            key, declaration_id=declaration_id, issued_at=issued, expires_at=issued + 48 * HOUR
        )
        world.people[name] = Person(i, declaration_id, status, doses, token, temporary)
    with engine.begin() as conn:
        insert_citizens(conn, rows=citizens)
        insert_declarations(conn, rows=declarations)
        upsert_checkpoint(
            conn,
            id=CHECKPOINT,
            name="Chốt Pháp Vân",
            kind="city_gate",
            ward_code=HOAN_KIEM,
            lat=20.95,
            lon=105.84,
        )
        upsert_checkpoint(
            conn,
            id=OTHER_CHECKPOINT,
            name="Chốt cầu Thăng Long",
            kind="city_gate",
            ward_code=BA_DINH,
            lat=21.1,
            lon=105.79,
        )
        for lane, gate in enumerate(GATES):
            add_device(
                conn,
                id=gate,
                checkpoint_id=CHECKPOINT,
                lane=lane,
                direction="in",
                mqtt_password=DEVICE_PASSWORD,
            )
        add_device(
            conn,
            id=OTHER_GATE,
            checkpoint_id=OTHER_CHECKPOINT,
            lane=0,
            direction="out",
            mqtt_password=DEVICE_PASSWORD,
        )
    return world


def payload(event: ScanEvent) -> bytes:
    """The bytes a gate publishes."""
    return encode(event)


def wait_for(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05
) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def forge(token: str) -> str:
    """The same pass with one bit of its signature flipped (well formed, not authentic)."""
    raw = bytearray(base45.b45decode(token.removeprefix(PREFIX)))
    raw[-1] ^= 0x01
    return PREFIX + base45.b45encode(bytes(raw)).decode()
