"""Gate devices' MQTT credentials: issued once on the admin screens, then handed to the broker.

How a device created on the admin page reaches the broker:

1. :func:`issue_device` registers it (``aggregator.db.fleet.add_device``: the
   username is the device id, the registry keeps an argon2 hash) with a fresh
   random password, and stores the same password in mosquitto's own ``$7$``
   format (``aggregator.broker.hash_password``) in ``devices.mqtt_broker_hash``.
   The plain password is returned once, shown once, and never stored.
2. :func:`sync_password_file` rewrites the broker's password file (the
   ``passwd`` that ``kiemdich broker files --out DIR`` wrote; setting
   ``KIEMDICH_WEB_BROKER_PASSWD_FILE``) from the registry: every device with
   a broker hash gets its line, every other line (service accounts such as
   the aggregator, devices provisioned from a credentials file) is kept as
   it was. The file is replaced atomically and under a lock, so concurrent
   admins cannot drop each other's devices.
3. :func:`reload_broker` sends SIGHUP to the broker whose pid file is
   ``KIEMDICH_WEB_BROKER_PID_FILE``: mosquitto rereads its password file
   without dropping connections. Without a pid file (broker in another
   container) the page says to reload it (``docker compose kill -s HUP mosquitto``).

The ACL needs no change: its ``pattern`` lines already give every device
rights on its own topics only.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, select, update

from aggregator.broker import hash_password
from aggregator.db.fleet import add_device
from aggregator.db.schema import DeviceDirection, devices

PASSWORD_BYTES = 24  # 32 URL-safe characters: typed rarely, pasted into a config file


class IssuedDevice(BaseModel):
    """A device just registered, with the only copy of its MQTT password."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_id: str
    checkpoint_id: str
    lane: int
    direction: DeviceDirection
    mqtt_username: str
    mqtt_password: str


@dataclass(frozen=True, slots=True)
class PasswordFileWritten:
    """What :func:`sync_password_file` wrote."""

    path: Path
    accounts: int
    devices: int


def issue_device(
    conn: Connection,
    *,
    device_id: str,
    checkpoint_id: str,
    lane: int,
    direction: DeviceDirection,
) -> IssuedDevice:
    """Register a device with a fresh random MQTT password; returns it (the only copy).

    Raises what :func:`aggregator.db.fleet.add_device` raises (``ValueError``
    for a bad id, ``IntegrityError`` for an unknown checkpoint or a taken id).
    """
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    add_device(
        conn,
        id=device_id,
        checkpoint_id=checkpoint_id,
        lane=lane,
        direction=direction,
        mqtt_password=password,
    )
    conn.execute(
        update(devices)
        .where(devices.c.id == device_id)
        .values(mqtt_broker_hash=hash_password(password))
    )
    return IssuedDevice(
        device_id=device_id,
        checkpoint_id=checkpoint_id,
        lane=lane,
        direction=direction,
        mqtt_username=device_id,
        mqtt_password=password,
    )


def broker_hashes(conn: Connection) -> dict[str, str]:
    """``{mqtt username: $7$ hash}`` of the devices whose credentials were issued here."""
    rows = conn.execute(
        select(devices.c.mqtt_username, devices.c.mqtt_broker_hash)
        .where(devices.c.mqtt_broker_hash.is_not(None))
        .order_by(devices.c.mqtt_username)
    )
    return {username: digest for username, digest in rows}


def merge_password_lines(existing: str, ours: Mapping[str, str]) -> list[str]:
    """The password file's lines: ``existing`` ones kept (ours replaced), new ones of ours added."""
    lines = []
    placed: set[str] = set()
    for line in existing.splitlines():
        username, sep, _ = line.partition(":")
        if sep and username in ours:
            lines.append(f"{username}:{ours[username]}")
            placed.add(username)
        elif line.strip():
            lines.append(line)
    lines += [f"{name}:{digest}" for name, digest in ours.items() if name not in placed]
    return lines


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with (path.parent / f".{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _replace(path: Path, text: str) -> None:
    # The new file keeps the old one's mode and owner: a broker running as another user
    # (mosquitto in its container) must still be able to read a 0600 password file.
    before = path.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, before.st_mode & 0o777)
        if (before.st_uid, before.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.chown(tmp, before.st_uid, before.st_gid)
            except PermissionError as exc:
                raise PermissionError(
                    f"{path}: không giữ được chủ sở hữu tệp (uid {before.st_uid}) / cannot keep "
                    f"the file's owner uid {before.st_uid}: run the aggregator as that user"
                ) from exc
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync_password_file(conn: Connection, *, path: Path) -> PasswordFileWritten:
    """Rewrite the broker's password file at ``path`` with every device issued here.

    The file must exist (``kiemdich broker files`` writes it with the service
    accounts); ``FileNotFoundError`` otherwise. Its permission bits are kept.
    Call it after the device's transaction committed, with a fresh connection.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: chưa có tệp mật khẩu broker, hãy chạy kiemdich broker files trước / "
            "no broker password file; run `kiemdich broker files` first"
        )
    with _locked(path):
        # Read the registry inside the lock: a later writer always sees earlier commits.
        ours = broker_hashes(conn)
        lines = merge_password_lines(path.read_text(encoding="utf-8"), ours)
        _replace(path, "\n".join(lines) + "\n")
    return PasswordFileWritten(path=path, accounts=len(lines), devices=len(ours))


def reload_broker(pid_file: Path) -> int:
    """Ask the mosquitto whose pid is in ``pid_file`` to reread its files (SIGHUP); its pid."""
    pid = int(Path(pid_file).read_text(encoding="ascii").split()[0])
    os.kill(pid, signal.SIGHUP)
    return pid
