"""Population simulator: a synthetic registry of citizens with signed health declarations.

``kiemdich sim population --citizens 1000000 --db sqlite:///var/kiemdich.db --seed 7 --out var/sim``

Writes into the database (migrated first) the citizens and their declarations,
and into ``--out``: the signing key (generated when absent), the public
``keyring.json`` gates verify with, ``tokens.csv`` (declaration_id,
identity_no, health_status, token) for the camera and city simulators,
``population.json`` (what was built, as of when) and, on request, QR images.

The same seed, key and ``--as-of`` give the same people and the same token
strings (Ed25519 signatures are deterministic). People are drawn in blocks of
``BLOCK`` from a numpy generator seeded with (seed, block number), always as
whole-block arrays, so a smaller population is a prefix of a larger one.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import numpy as np
import segno
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from tqdm import tqdm

from aggregator.db.engine import default_url, make_engine
from aggregator.db.migrate import upgrade
from aggregator.db.registry import (
    CitizenRow,
    DeclarationRow,
    count_citizens,
    insert_citizens,
    insert_declarations,
)
from aggregator.db.schema import DeclarationSource, HealthStatus, Sex
from aggregator.db.wards import WardRecord, list_wards
from contract.token import HOUR, MAX_DECLARATION_ID, Keyring, SigningKey, issue_token
from simulators import names

TOKENS_CSV = "tokens.csv"
KEYRING_FILE = "keyring.json"
SIGNING_KEY_FILE = "signing-key.json"
SUMMARY_FILE = "population.json"
QR_DIR = "qr"
TOKEN_COLUMNS = ("declaration_id", "identity_no", "health_status", "token")
DEFAULT_KID = 1
DAY_S = 86_400
BLOCK = 5_000  # people per generator block and per transaction

# How long ago a status began, in days (low, high), by status.
_STATUS_AGE_DAYS: dict[HealthStatus, tuple[int, int]] = {
    HealthStatus.NONE: (30, 365),
    HealthStatus.F0: (0, 14),
    HealthStatus.F1: (0, 14),
    HealthStatus.F2: (0, 14),
    HealthStatus.F3: (0, 14),
    HealthStatus.RECOVERED: (14, 120),
    HealthStatus.DECEASED: (1, 60),
}
# Chance that a declaration reports contact with a case, by status.
_CONTACT_RISK: dict[HealthStatus, float] = {
    HealthStatus.F0: 0.5,
    HealthStatus.F1: 0.8,
    HealthStatus.F2: 0.3,
    HealthStatus.F3: 0.1,
}
_SOURCES = (DeclarationSource.APP, DeclarationSource.WEB, DeclarationSource.PAPER)
_SOURCE_P = np.array([0.70, 0.22, 0.08])
_VACCINE_P = np.array([0.12, 0.23, 0.65])  # 0, 1, 2 doses (people aged 12+)
_TEMPORARY_RESIDENCE_SHARE = 0.12
_BORN_IN_HOME_PROVINCE = 0.85
_SHARE_STATUSES = ("f0", "f1", "f2", "f3", "recovered", "deceased")
_URBAN_WARD_WEIGHT = 3.0  # a phường holds more people than a xã
_MIGRANT_CITY_BOOST = 4.0  # temporary residents and travellers head for the two big cities


class PopulationError(Exception):
    """The population cannot be built as asked (the message says why, in both languages)."""


def _today_utc() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class PopulationConfig(BaseModel):
    """Everything a build depends on; validated before any work starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    citizens: int = Field(ge=1, le=200_000_000)
    db_url: str
    seed: int = Field(ge=0)
    out: Path
    qr_images: int = Field(default=0, ge=0)
    f0_share: float = Field(default=0.002, ge=0, le=1)
    f1_share: float = Field(default=0.01, ge=0, le=1)
    f2_share: float = Field(default=0.01, ge=0, le=1)
    f3_share: float = Field(default=0.005, ge=0, le=1)
    recovered_share: float = Field(default=0.02, ge=0, le=1)
    deceased_share: float = Field(default=0.0005, ge=0, le=1)
    declaration_share: float = Field(default=1.0, ge=0, le=1)
    signing_key: Path | None = None
    as_of: AwareDatetime = Field(default_factory=_today_utc)
    valid_days: int = Field(default=14, ge=1, le=365)

    @model_validator(mode="after")
    def _shares_fit(self) -> Self:
        total = sum(self.status_shares().values()) - self.status_shares()[HealthStatus.NONE]
        if total > 1:
            raise ValueError(f"health status shares add up to {total:.4f} > 1")
        return self

    def status_shares(self) -> dict[HealthStatus, float]:
        """Share of the population per health status (``none`` takes the rest)."""
        flagged = {
            HealthStatus.F0: self.f0_share,
            HealthStatus.F1: self.f1_share,
            HealthStatus.F2: self.f2_share,
            HealthStatus.F3: self.f3_share,
            HealthStatus.RECOVERED: self.recovered_share,
            HealthStatus.DECEASED: self.deceased_share,
        }
        return {HealthStatus.NONE: max(0.0, 1 - sum(flagged.values())), **flagged}


@dataclass
class BuildResult:
    """What a build produced."""

    citizens: int
    declarations: int
    status_counts: dict[str, int]
    tokens_csv: Path
    keyring: Path
    signing_key: Path
    qr_images: list[Path] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _WardPools:
    codes: np.ndarray
    province_of: np.ndarray
    resident_p: np.ndarray
    migrant_p: np.ndarray
    provinces: np.ndarray
    province_p: np.ndarray


def _ward_pools(wards: list[WardRecord]) -> _WardPools:
    """Where people live: by province population, then urban wards over rural ones."""
    if not wards:
        raise PopulationError("CSDL chưa có danh mục phường/xã / the database has no wards")
    codes = np.array([w.code for w in wards], dtype=np.int64)
    province_of = np.array([w.province_code for w in wards], dtype=np.int64)
    urban = np.array([w.division_type == "phường" for w in wards])
    ward_weight = np.where(urban, _URBAN_WARD_WEIGHT, 1.0)
    provinces = np.unique(province_of)
    population = np.array([names.PROVINCE_POPULATION_M.get(int(p), 1.0) for p in provinces])
    big_city = np.isin(provinces, [names.HANOI, names.HO_CHI_MINH_CITY])

    def per_ward(province_weights: np.ndarray) -> np.ndarray:
        index = np.searchsorted(provinces, province_of)
        in_province = np.bincount(index, weights=ward_weight)
        p = province_weights[index] * ward_weight / in_province[index]
        return p / p.sum()

    migrant = population * np.where(big_city, _MIGRANT_CITY_BOOST, 1.0)
    return _WardPools(
        codes=codes,
        province_of=province_of,
        resident_p=per_ward(population),
        migrant_p=per_ward(migrant),
        provinces=provinces,
        province_p=population / population.sum(),
    )


@dataclass
class _Chunk:
    citizens: list[CitizenRow]
    declarations: list[DeclarationRow]
    tokens: list[tuple[int, str, str, str]]


class _Generator:
    """Draws people chunk by chunk from one seeded generator."""

    def __init__(self, config: PopulationConfig, wards: _WardPools, key: SigningKey) -> None:
        self.config = config
        self.wards = wards
        self.key = key
        self.block_index = 0
        self.pools = names.name_pools()
        self.phone_prefixes, self.phone_p = names.phone_prefixes()
        self.age_p = names.age_band_probabilities()
        self.statuses = list(config.status_shares())
        self.status_p = np.array(list(config.status_shares().values()))
        self.status_p = self.status_p / self.status_p.sum()
        self.identity_nos: set[str] = set()
        self.declaration_ids: set[int] = set()
        self.next_id = 1
        self.as_of = config.as_of.astimezone(UTC)

    def _ages_and_birth_dates(
        self, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, list[date]]:
        band = rng.choice(len(names.AGE_BANDS), p=self.age_p, size=n)
        low = np.array([b[0] for b in names.AGE_BANDS])[band]
        high = np.array([b[1] for b in names.AGE_BANDS])[band]
        age_days = ((low + rng.random(n) * (high - low)) * 365.25).astype(np.int64)
        births = np.datetime64(self.as_of.date(), "D") - age_days.astype("timedelta64[D]")
        return age_days // 365, births.tolist()

    def _identity_no(self, rng: np.random.Generator, province: int, born: date, sex: Sex) -> str:
        # CCCD: province of birth (3), century and sex (1), year (2), 6 random digits.
        century = (born.year // 100 - 19) * 2 + (1 if sex is Sex.FEMALE else 0)
        head = f"{province:03d}{century}{born.year % 100:02d}"
        while True:
            candidate = f"{head}{int(rng.integers(0, 1_000_000)):06d}"
            if candidate not in self.identity_nos:
                self.identity_nos.add(candidate)
                return candidate

    def _declaration_id(self, rng: np.random.Generator, drawn: int) -> int:
        while drawn in self.declaration_ids:
            drawn = int(rng.integers(1, MAX_DECLARATION_ID, endpoint=True))
        self.declaration_ids.add(drawn)
        return drawn

    def block(self, people: int) -> _Chunk:
        """The next block's first ``people`` people (at most ``BLOCK``), declarations, tokens."""
        if not 0 < people <= BLOCK:
            raise ValueError(f"a block holds 1..{BLOCK} people: {people}")
        rng = np.random.default_rng([self.config.seed, self.block_index])
        self.block_index += 1
        pools, wards = self.pools, self.wards
        n = BLOCK
        female = rng.random(n) < 0.503
        ages, births = self._ages_and_birth_dates(rng, n)
        last = rng.choice(len(pools.last), p=pools.last_p, size=n)
        mid_m = rng.choice(len(pools.middle_male), p=pools.middle_male_p, size=n)
        mid_f = rng.choice(len(pools.middle_female), p=pools.middle_female_p, size=n)
        first_m = rng.integers(0, len(pools.first_male), size=n)
        first_f = rng.integers(0, len(pools.first_female), size=n)
        has_phone = (ages >= 12) & (rng.random(n) < np.where(ages >= 75, 0.6, 0.97))
        prefix = rng.choice(len(self.phone_prefixes), p=self.phone_p, size=n)
        subscriber = rng.integers(0, 10_000_000, size=n)
        permanent = rng.choice(len(wards.codes), p=wards.resident_p, size=n)
        temporary = rng.choice(len(wards.codes), p=wards.migrant_p, size=n)
        has_temporary = (rng.random(n) < _TEMPORARY_RESIDENCE_SHARE) & (temporary != permanent)
        born_home = rng.random(n) < _BORN_IN_HOME_PROVINCE
        other_province = rng.choice(wards.provinces, p=wards.province_p, size=n)
        doses = np.where(ages >= 12, rng.choice(3, p=_VACCINE_P, size=n), 0)
        status = rng.choice(len(self.statuses), p=self.status_p, size=n)
        status_age = rng.random(n)
        declares = rng.random(n) < self.config.declaration_share
        declaration_draw = rng.integers(1, MAX_DECLARATION_ID, size=n, endpoint=True)
        created_ago = rng.integers(0, 72 * HOUR, size=n)
        destination = rng.choice(len(wards.codes), p=wards.migrant_p, size=n)
        house = rng.integers(1, 300, size=(n, 2))
        street = rng.integers(0, len(names.STREETS), size=(n, 2))
        symptom_draw = rng.random(n)
        symptom_count = rng.integers(1, 4, size=n)
        symptom_pick = rng.integers(0, len(names.SYMPTOMS), size=(n, 3))
        contact_draw = rng.random(n)
        source = rng.choice(len(_SOURCES), p=_SOURCE_P, size=n)

        # Per-person values as plain Python lists: indexing numpy scalars in a
        # loop costs several times more.
        k = people
        obj = np.asarray
        middle = np.where(
            female,
            obj(pools.middle_female, dtype=object)[mid_f],
            obj(pools.middle_male, dtype=object)[mid_m],
        )
        first = np.where(
            female,
            obj(pools.first_female, dtype=object)[first_f],
            obj(pools.first_male, dtype=object)[first_m],
        )
        last_names = obj(pools.last, dtype=object)[last]
        full_names = [
            f"{a} {b} {c}" for a, b, c in zip(last_names[:k], middle[:k], first[:k], strict=True)
        ]
        statuses = [self.statuses[j] for j in status[:k].tolist()]
        since_low = np.array([_STATUS_AGE_DAYS[h][0] for h in self.statuses])[status]
        since_high = np.array([_STATUS_AGE_DAYS[h][1] for h in self.statuses])[status]
        since_s = ((since_low + status_age * (since_high - since_low)) * DAY_S).astype(np.int64)
        birth_province = np.where(born_home, wards.province_of[permanent], other_province)
        phone_prefix = obj(self.phone_prefixes, dtype=object)[prefix]
        phones = [
            f"{pre}{number:07d}" if has else None
            for pre, number, has in zip(
                phone_prefix[:k], subscriber[:k].tolist(), has_phone[:k].tolist(), strict=True
            )
        ]
        permanent_codes = wards.codes[permanent].tolist()
        temporary_codes = wards.codes[temporary].tolist()
        destination_codes = wards.codes[destination].tolist()
        lists = {
            "female": female[:k].tolist(),
            "temporary": has_temporary[:k].tolist(),
            "birth_province": birth_province[:k].tolist(),
            "since_s": since_s[:k].tolist(),
            "doses": doses[:k].tolist(),
            "declares": declares[:k].tolist(),
            "declaration_draw": declaration_draw[:k].tolist(),
            "created_ago": created_ago[:k].tolist(),
            "house": house[:k].tolist(),
            "street": street[:k].tolist(),
            "symptom_draw": symptom_draw[:k].tolist(),
            "symptom_count": symptom_count[:k].tolist(),
            "symptom_pick": symptom_pick[:k].tolist(),
            "contact_draw": contact_draw[:k].tolist(),
            "source": source[:k].tolist(),
        }

        out = _Chunk([], [], [])
        for i in range(k):
            sex = Sex.FEMALE if lists["female"][i] else Sex.MALE
            health = statuses[i]
            since = self.as_of - timedelta(seconds=lists["since_s"][i])
            citizen_id = self.next_id
            self.next_id += 1
            identity_no = self._identity_no(rng, lists["birth_province"][i], births[i], sex)
            permanent_code = permanent_codes[i]
            temporary_code = temporary_codes[i] if lists["temporary"][i] else None
            out.citizens.append(
                {
                    "id": citizen_id,
                    "identity_no": identity_no,
                    "full_name": full_names[i],
                    "date_of_birth": births[i],
                    "sex": sex.value,
                    "phone": phones[i],
                    "permanent_ward_code": permanent_code,
                    "temporary_ward_code": temporary_code,
                    "vaccine_doses": lists["doses"][i],
                    "health_status": health.value,
                    "status_since": since,
                    "updated_at": since,
                }
            )
            if not lists["declares"][i]:
                continue
            declaration_id = self._declaration_id(rng, lists["declaration_draw"][i])
            created = self.as_of - timedelta(seconds=lists["created_ago"][i])
            issued = int(created.timestamp()) // HOUR * HOUR
            expires = issued + self.config.valid_days * DAY_S
            symptom_draw_i = lists["symptom_draw"][i]
            picks = lists["symptom_pick"][i]
            if health is HealthStatus.F0 and symptom_draw_i < 0.6:
                symptoms = [names.SYMPTOMS[j] for j in picks[: lists["symptom_count"][i]]]
            elif symptom_draw_i < 0.03:
                symptoms = [names.SYMPTOMS[picks[0]]]
            else:
                symptoms = []
            house_i, street_i = lists["house"][i], lists["street"][i]
            out.declarations.append(
                {
                    "id": declaration_id,
                    "citizen_id": citizen_id,
                    "origin_ward_code": temporary_code or permanent_code,
                    "destination_ward_code": destination_codes[i],
                    "origin_detail": f"Số {house_i[0]} {names.STREETS[street_i[0]]}",
                    "destination_detail": f"Số {house_i[1]} {names.STREETS[street_i[1]]}",
                    "symptoms": list(dict.fromkeys(symptoms)),
                    "contact_risk": lists["contact_draw"][i] < _CONTACT_RISK.get(health, 0.01),
                    "source": _SOURCES[lists["source"][i]].value,
                    "entered_by": None,
                    "key_id": self.key.kid,
                    "created_at": created,
                    "expires_at": datetime.fromtimestamp(expires, UTC),
                }
            )
            token = issue_token(
                self.key, declaration_id=declaration_id, issued_at=issued, expires_at=expires
            )
            out.tokens.append((declaration_id, identity_no, health.value, token))
        return out


def _load_or_create_key(config: PopulationConfig) -> tuple[SigningKey, Path]:
    path = config.signing_key or config.out / SIGNING_KEY_FILE
    if path.exists():
        try:
            return SigningKey.load(path), path
        except ValueError as exc:
            raise PopulationError(
                f"Khóa ký không hợp lệ / invalid signing key {path}: {exc}"
            ) from exc
    key = SigningKey.generate(DEFAULT_KID)
    key.save(path)
    return key, path


def _chunk_sizes(total: int, size: int) -> Iterator[int]:
    for start in range(0, total, size):
        yield min(size, total - start)


def build_population(config: PopulationConfig, *, progress: bool = True) -> BuildResult:
    """Build the registry described by ``config`` into its database and output folder.

    Refuses a database that already holds citizens (ids and identity numbers
    would collide). Commits chunk by chunk; ``tokens.csv`` appears only once
    the whole build has succeeded.
    """
    started = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    key, key_path = _load_or_create_key(config)
    keyring_path = config.out / KEYRING_FILE
    Keyring.from_keys([key.public()]).save(keyring_path)

    upgrade(config.db_url)
    engine = make_engine(config.db_url)
    tokens_path = config.out / TOKENS_CSV
    partial = tokens_path.with_suffix(".csv.partial")
    qr_paths: list[Path] = []
    statuses: Counter[str] = Counter()
    declared = 0
    try:
        with engine.connect() as conn:
            if count_citizens(conn):
                raise PopulationError(
                    "CSDL đã có dân cư; hãy dùng CSDL trống / the registry already holds "
                    f"citizens; use an empty database: {engine.url!r}"
                )
            wards = _ward_pools(list_wards(conn))
        generator = _Generator(config, wards, key)
        bar = tqdm(
            total=config.citizens,
            desc="Dân cư / citizens",
            unit="người",
            unit_scale=True,
            file=sys.stderr,
            disable=not progress,
            mininterval=1.0,
        )
        with partial.open("w", newline="", encoding="utf-8") as fh, bar:
            writer = csv.writer(fh)
            writer.writerow(TOKEN_COLUMNS)
            for size in _chunk_sizes(config.citizens, BLOCK):
                chunk = generator.block(size)
                with engine.begin() as conn:
                    insert_citizens(conn, rows=chunk.citizens)
                    insert_declarations(conn, rows=chunk.declarations)
                writer.writerows(chunk.tokens)
                statuses.update(c["health_status"] for c in chunk.citizens)
                declared += len(chunk.declarations)
                for declaration_id, _, _, token in chunk.tokens:
                    if len(qr_paths) >= config.qr_images:
                        break
                    qr_paths.append(_write_qr(config.out / QR_DIR, declaration_id, token))
                bar.update(size)
    finally:
        engine.dispose()
    partial.replace(tokens_path)
    result = BuildResult(
        citizens=config.citizens,
        declarations=declared,
        status_counts=dict(sorted(statuses.items())),
        tokens_csv=tokens_path,
        keyring=keyring_path,
        signing_key=key_path,
        qr_images=qr_paths,
        seconds=time.perf_counter() - started,
    )
    _write_summary(config, result)
    return result


def _write_qr(directory: Path, declaration_id: int, token: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{declaration_id}.png"
    # ECC M exactly (no boost): the level the token's size budget was designed for.
    segno.make(token, error="m", boost_error=False, micro=False).save(path, scale=4, border=4)
    return path


def _write_summary(config: PopulationConfig, result: BuildResult) -> None:
    summary: dict[str, Any] = {
        "seed": config.seed,
        "as_of": config.as_of.astimezone(UTC).isoformat(),
        "valid_days": config.valid_days,
        "citizens": result.citizens,
        "declarations": result.declarations,
        "status_counts": result.status_counts,
        "tokens_csv": result.tokens_csv.name,
        "keyring": result.keyring.name,
        "qr_images": [p.relative_to(config.out).as_posix() for p in result.qr_images],
    }
    (config.out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False))


# --- CLI ----------------------------------------------------------------------


def _aware(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}Z or {text}+07:00")
    return value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = PopulationConfig.model_fields
    parser.add_argument("--citizens", type=int, default=10_000, help="số công dân / how many")
    parser.add_argument("--db", default=default_url(), help="URL CSDL / database URL")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--out", type=Path, default=Path("var/sim"), help="thư mục ra / output")
    parser.add_argument("--qr-images", type=int, default=0, help="số ảnh QR / QR PNGs to write")
    for status in _SHARE_STATUSES:
        name = f"{status}_share"
        parser.add_argument(
            f"--{status}-share", dest=name, type=float, default=defaults[name].default
        )
    parser.add_argument("--declaration-share", type=float, default=1.0)
    parser.add_argument("--signing-key", type=Path, help=f"default OUT/{SIGNING_KEY_FILE}")
    parser.add_argument(
        "--as-of",
        type=_aware,
        help="thời điểm mô phỏng / simulated present, ISO 8601 with zone (default today 00:00Z)",
    )
    parser.add_argument("--valid-days", type=int, default=14, help="hạn mã / pass validity")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run(args: argparse.Namespace) -> int:
    fields: dict[str, Any] = {
        "citizens": args.citizens,
        "db_url": args.db,
        "seed": args.seed,
        "out": args.out,
        "qr_images": args.qr_images,
        "declaration_share": args.declaration_share,
        "signing_key": args.signing_key,
        "valid_days": args.valid_days,
        **{f"{s}_share": getattr(args, f"{s}_share") for s in _SHARE_STATUSES},
    }
    if args.as_of is not None:
        fields["as_of"] = args.as_of
    try:
        config = PopulationConfig(**fields)
        result = build_population(config, progress=not args.quiet)
    except (PopulationError, ValueError) as exc:
        print(f"Lỗi / error: {exc}", file=sys.stderr)
        return 2
    rate = result.citizens / result.seconds if result.seconds else 0.0
    qr = f"\nQR: {len(result.qr_images)} → {result.qr_images[0].parent}" if result.qr_images else ""
    print(
        f"{result.citizens} công dân / citizens, {result.declarations} tờ khai / declarations "
        f"in {result.seconds:.1f} s ({rate:,.0f}/s)\n"
        f"tình trạng / status: {result.status_counts}\n"
        f"tokens: {result.tokens_csv}  keyring: {result.keyring}  key: {result.signing_key}" + qr
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``population`` to a ``sim`` command group; its ``func(args) -> int`` runs it."""
    parser = subparsers.add_parser(
        "population", help="Sinh dân cư giả lập / build a synthetic population registry"
    )
    _add_arguments(parser)
    parser.set_defaults(func=_run)


def main(argv: list[str] | None = None) -> int:
    """``python -m simulators.population --citizens 1000 ...``."""
    parser = argparse.ArgumentParser(prog="kiemdich sim population")
    _add_arguments(parser)
    return _run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
