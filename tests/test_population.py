"""Population simulator: determinism, configured shares, valid identities, verifiable tokens."""

from __future__ import annotations

import csv
import math
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import cv2
import pytest
import zxingcpp
from sqlalchemy import select

from aggregator.db.engine import make_engine
from aggregator.db.registry import get_declaration
from aggregator.db.schema import citizens, declarations, wards
from contract.token import Keyring, verify_token
from simulators import names
from simulators.population import (
    BLOCK,
    KEYRING_FILE,
    SIGNING_KEY_FILE,
    TOKEN_COLUMNS,
    TOKENS_CSV,
    PopulationConfig,
    build_population,
    main,
)

AS_OF = datetime(2026, 3, 1, 7, 30, tzinfo=UTC)
PROVINCES = set(names.PROVINCE_POPULATION_M)
PHONE_PREFIXES = set(names.phone_prefixes()[0])


def _config(db_url: str, out: Path, **extra: object) -> PopulationConfig:
    values: dict[str, object] = {
        "citizens": 1500,
        "db_url": db_url,
        "seed": 7,
        "out": out,
        "as_of": AS_OF,
    }
    return PopulationConfig(**{**values, **extra})


def _read_tokens(out: Path) -> list[dict[str, str]]:
    with (out / TOKENS_CSV).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == TOKEN_COLUMNS
        return list(reader)


def _citizen_rows(db_url: str) -> list[tuple[object, ...]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(citizens).order_by(citizens.c.id))]
    finally:
        engine.dispose()


def test_same_seed_gives_same_people_and_tokens(tmp_path: Path) -> None:
    first_db, second_db, other_db, larger_db = (
        f"sqlite:///{tmp_path / n}.db" for n in ("a", "b", "c", "d")
    )
    first = build_population(_config(first_db, tmp_path / "a"), progress=False)
    key = first.signing_key
    argv = ["--citizens", "1500", "--seed", "7", "--as-of", AS_OF.isoformat(), "--quiet"]
    assert (
        main([*argv, "--db", second_db, "--out", str(tmp_path / "b"), "--signing-key", str(key)])
        == 0
    )
    build_population(_config(other_db, tmp_path / "c", seed=8, signing_key=key), progress=False)

    assert (tmp_path / "a" / TOKENS_CSV).read_bytes() == (tmp_path / "b" / TOKENS_CSV).read_bytes()
    assert _citizen_rows(first_db) == _citizen_rows(second_db)
    other_tokens = {r["token"] for r in _read_tokens(tmp_path / "c")}
    assert not other_tokens & {r["token"] for r in _read_tokens(tmp_path / "a")}
    assert _citizen_rows(first_db) != _citizen_rows(other_db)

    # A larger population (several generator blocks) starts with the same people.
    assert BLOCK < 5200
    build_population(
        _config(larger_db, tmp_path / "d", citizens=5200, signing_key=key), progress=False
    )
    assert _citizen_rows(larger_db)[:1500] == _citizen_rows(first_db)
    assert _read_tokens(tmp_path / "d")[:1500] == _read_tokens(tmp_path / "a")


def _within(count: int, n: int, p: float) -> bool:
    # Five standard deviations of a binomial: fails only on a real bias.
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1


def test_shares_follow_the_configuration(tmp_path: Path) -> None:
    n = 6000
    shares = {
        "f0_share": 0.05,
        "f1_share": 0.10,
        "f2_share": 0.04,
        "f3_share": 0.03,
        "recovered_share": 0.08,
        "deceased_share": 0.02,
    }
    db = f"sqlite:///{tmp_path / 'p.db'}"
    result = build_population(
        _config(db, tmp_path / "out", citizens=n, declaration_share=0.7, **shares), progress=False
    )
    by_status = {
        "F0": "f0_share",
        "F1": "f1_share",
        "F2": "f2_share",
        "F3": "f3_share",
        "recovered": "recovered_share",
        "deceased": "deceased_share",
    }
    for status, share_name in by_status.items():
        assert _within(result.status_counts[status], n, shares[share_name]), (status, result)
    assert _within(result.status_counts["none"], n, 1 - sum(shares.values()))
    assert _within(result.declarations, n, 0.7)

    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            people = conn.execute(
                select(
                    citizens.c.date_of_birth,
                    citizens.c.sex,
                    citizens.c.vaccine_doses,
                    wards.c.province_code,
                ).join(wards, wards.c.code == citizens.c.permanent_ward_code)
            ).all()
            declared = conn.execute(select(declarations.c.id)).scalars().all()
    finally:
        engine.dispose()
    assert len(declared) == result.declarations
    ages = [(AS_OF.date() - p.date_of_birth).days / 365.25 for p in people]
    assert _within(sum(a < 15 for a in ages), n, 0.236)  # the pyramid's 0-14 share
    assert max(ages) < 100
    assert _within(sum(p.sex == "female" for p in people), n, 0.503)
    assert all(p.vaccine_doses == 0 for p, a in zip(people, ages, strict=True) if a < 12)
    provinces = Counter(p.province_code for p in people).most_common(2)
    assert {code for code, _ in provinces} == {names.HANOI, names.HO_CHI_MINH_CITY}


def test_identity_numbers_are_valid_and_unique(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'i.db'}"
    build_population(_config(db, tmp_path / "out", citizens=4000), progress=False)
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    citizens.c.identity_no,
                    citizens.c.sex,
                    citizens.c.date_of_birth,
                    citizens.c.phone,
                    citizens.c.full_name,
                )
            ).all()
    finally:
        engine.dispose()
    identity_nos = [r.identity_no for r in rows]
    assert len(set(identity_nos)) == len(rows) == 4000
    for row in rows:
        number: str = row.identity_no
        born: date = row.date_of_birth
        assert len(number) == 12 and number.isdigit()
        assert int(number[:3]) in PROVINCES
        century = (born.year // 100 - 19) * 2 + (row.sex == "female")
        assert int(number[3]) == century, row
        assert number[4:6] == f"{born.year % 100:02d}"
        if row.phone is not None:
            assert len(row.phone) == 10 and row.phone[:3] in PHONE_PREFIXES
        assert len(row.full_name.split()) >= 3
    assert any(any(ch in name for ch in "ăâđêôơưĐ") for name in (r.full_name for r in rows))


def test_every_token_verifies_and_maps_to_its_citizen(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = build_population(_config(db_url, out, qr_images=2), progress=False)
    ring = Keyring.load(out / KEYRING_FILE)
    tokens = _read_tokens(out)
    assert len(tokens) == result.declarations == 1500
    now = int(AS_OF.timestamp())
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            for row in tokens:
                verdict = verify_token(row["token"], ring, now=now)
                assert verdict.ok, (row, verdict)
                assert verdict.claims is not None
                assert verdict.claims.declaration_id == int(row["declaration_id"])
                found = get_declaration(conn, declaration_id=int(row["declaration_id"]))
                assert found is not None
                assert found.citizen.identity_no == row["identity_no"]
                assert found.citizen.health_status.value == row["health_status"]
                assert found.key_id == verdict.claims.kid
                assert int(found.expires_at.timestamp()) == verdict.claims.expires_at
                assert found.created_at <= AS_OF
    finally:
        engine.dispose()

    assert len(result.qr_images) == 2
    for path, row in zip(result.qr_images, tokens, strict=False):
        decoded = zxingcpp.read_barcodes(cv2.imread(str(path)))
        assert [d.text for d in decoded] == [row["token"]]
        assert path.stem == row["declaration_id"]


def test_refuses_a_registry_that_already_has_people(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    out = tmp_path / "out"
    build_population(_config(db, out, citizens=50), progress=False)
    before = (out / TOKENS_CSV).read_bytes()
    argv = ["--citizens", "50", "--db", db, "--out", str(out), "--quiet"]
    assert main(argv) == 2
    assert "already holds citizens" in capsys.readouterr().err
    assert (out / TOKENS_CSV).read_bytes() == before
    assert (out / SIGNING_KEY_FILE).exists()


def test_bad_options_are_refused_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["--db", db, "--out", str(tmp_path), "--f0-share", "0.6", "--f1-share", "0.6"]) == 2
    assert "add up to" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--db", db, "--out", str(tmp_path), "--as-of", "2026-03-01T00:00:00"])
    assert "time zone" in capsys.readouterr().err
