"""``kiemdich devices generate``: the files a checkpoint's gate devices need, one set per lane.

For a checkpoint with N inbound and M outbound lanes it writes, into ``--out``:

* ``<device-id>.yaml`` — the device config, made from ``example-gate.yaml`` (its
  bilingual comments kept) with the identity, broker and paths filled in, and
  validated with :func:`edge.config.load_config` before it is written;
* ``<device-id>.env`` (mode 0600) — ``KIEMDICH_MQTT_PASSWORD=<random>``, read by
  the systemd unit's ``EnvironmentFile=``; the YAML only says
  ``${KIEMDICH_MQTT_PASSWORD}``;
* ``credentials.json`` (mode 0600) — ``{"device id": "password"}`` merged with
  what is already there, the input of ``kiemdich broker files --credentials``.

Runs on an admin laptop with ``pip install '.[edge]'``: only the standard
library, PyYAML, ``contract`` and ``edge.config``. Nothing is written unless
every device passes every check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from contract.topics import DEVICE_ID_PATTERN
from edge.config import ConfigError, EdgeConfig, SourceKind, load_config, parse_source

TEMPLATE = Path(__file__).resolve().parent / "example-gate.yaml"
CREDENTIALS_FILE = "credentials.json"
PASSWORD_ENV = "KIEMDICH_MQTT_PASSWORD"
PASSWORD_BYTES = 24  # 32 URL-safe characters: no quoting needed in .env or YAML
_ID = re.compile(DEVICE_ID_PATTERN)
# Sensor controls are refused for non-V4L2 sources (an IP camera is set up on the camera).
_SENSOR_KEYS = ("width", "height", "fps", "exposure", "gain", "focus", "fourcc", "buffer_size")
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<rest>.*)$")


class GenerateError(ValueError):
    """Refused input; ``problems`` lists every reason (nothing was written)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Plan:
    """What to generate: the checkpoint, its lanes and how its devices reach the broker."""

    checkpoint_id: str
    inbound: int
    outbound: int
    broker_host: str
    broker_port: int = 8883
    tls: bool = True
    ca_file: str = "/etc/kiemdich/ca.pem"
    client_certs: bool = False
    cert_dir: str = "/etc/kiemdich"
    keyring: str | None = None  # None: <state_dir>/<id>/keyring.json (the unit seeds it)
    state_dir: str = "/var/lib/kiemdich"
    camera: str = "v4l2:/dev/video0"
    prefix: str | None = None  # device ids are <prefix>-in1, <prefix>-out3 (default: checkpoint)


@dataclass(frozen=True, slots=True)
class Device:
    """One lane's device."""

    id: str
    lane: int
    direction: str


def devices(plan: Plan) -> list[Device]:
    """The devices of ``plan``: inbound lanes 1..N, then outbound lanes N+1..N+M."""
    prefix = plan.prefix or plan.checkpoint_id
    out = [Device(f"{prefix}-in{n}", n, "in") for n in range(1, plan.inbound + 1)]
    out += [
        Device(f"{prefix}-out{n}", n, "out")
        for n in range(plan.inbound + 1, plan.inbound + plan.outbound + 1)
    ]
    return out


def _scalar(value: object) -> str:
    """``value`` as a one-line YAML scalar."""
    return (
        yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix("\n...\n").strip()
    )


def set_values(text: str, values: Mapping[tuple[str, ...], object]) -> str:
    """``text`` (a block-style YAML document) with the keys at ``values``' paths replaced.

    Each key keeps its line and its comment. A mapping replaced by a scalar
    (``mqtt.tls: None``) loses its child lines. Raises ``KeyError`` naming any
    path not found, so a template change cannot silently drop a setting.
    """
    pending = dict(values)
    out: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    skip_below: int | None = None
    for line in text.splitlines(keepends=True):
        match = _KEY_LINE.match(line)
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if skip_below is not None:
            if not stripped:
                out.append(line)
                continue
            if indent > skip_below:
                continue
            skip_below = None
        if match is None:
            out.append(line)
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(key for _, key in stack), match["key"])
        stack.append((indent, match["key"]))
        if path not in pending:
            out.append(line)
            continue
        value = pending.pop(path)
        rest = match["rest"]
        hash_at = rest.find(" #")
        new = f"{match['indent']}{match['key']}: {_scalar(value)}"
        if hash_at >= 0:
            # The template aligns its comments at column 30.
            new += " " * max(2, 30 - len(new)) + rest[hash_at:].lstrip()
        out.append(new + "\n")
        if not rest[: hash_at if hash_at >= 0 else None].strip():
            skip_below = indent  # it was a mapping: drop its children
    if pending:
        raise KeyError(", ".join(".".join(path) for path in pending))
    return "".join(out)


def device_values(plan: Plan, device: Device) -> dict[tuple[str, ...], object]:
    """The template keys to set for ``device``."""
    state = f"{plan.state_dir.rstrip('/')}/{device.id}"
    values: dict[tuple[str, ...], object] = {
        ("device", "id"): device.id,
        ("device", "checkpoint_id"): plan.checkpoint_id,
        ("device", "lane"): device.lane,
        ("device", "direction"): device.direction,
        ("camera", "source"): plan.camera,
        ("verify", "keyring"): plan.keyring or f"{state}/keyring.json",
        ("verify", "denylist_cache"): f"{state}/denylist.json",
        ("mqtt", "host"): plan.broker_host,
        ("mqtt", "port"): plan.broker_port,
        ("mqtt", "username"): device.id,
        ("mqtt", "password"): f"${{{PASSWORD_ENV}}}",
        ("outbox", "path"): f"{state}/outbox.sqlite3",
    }
    if parse_source(plan.camera).kind is not SourceKind.V4L2:
        values.update({("camera", key): None for key in _SENSOR_KEYS})
    if not plan.tls:
        values[("mqtt", "tls")] = None
    else:
        values[("mqtt", "tls", "ca_file")] = plan.ca_file
        if plan.client_certs:
            certs = plan.cert_dir.rstrip("/")
            values[("mqtt", "tls", "cert_file")] = f"{certs}/{device.id}.crt"
            values[("mqtt", "tls", "key_file")] = f"{certs}/{device.id}.key"
    return values


def _check_plan(plan: Plan, planned: list[Device]) -> list[str]:
    problems = []
    if not _ID.match(plan.checkpoint_id):
        problems.append(
            f"mã chốt không hợp lệ / invalid checkpoint id {plan.checkpoint_id!r} "
            f"(must match {DEVICE_ID_PATTERN})"
        )
    if plan.inbound < 0 or plan.outbound < 0 or not planned:
        problems.append("cần ít nhất một làn / at least one lane (--inbound/--outbound)")
    if plan.inbound + plan.outbound > 63:
        problems.append("tối đa 63 làn / at most 63 lanes per checkpoint")
    for device in planned:
        if not _ID.match(device.id):
            problems.append(
                f"mã thiết bị không hợp lệ / invalid device id {device.id!r} "
                f"(must match {DEVICE_ID_PATTERN}; use a shorter --prefix)"
            )
    try:
        parse_source(plan.camera)
    except ValueError as exc:
        problems.append(f"--camera: {exc}")
    return problems


def read_credentials(path: Path) -> dict[str, str]:
    """An existing ``credentials.json`` (``{}`` when absent); refuses anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise GenerateError([f"{path}: không đọc được / cannot read: {exc}"]) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise GenerateError([f"{path}: cần JSON {{mã thiết bị: mật khẩu}} / expected {{id: pw}}"])
    return data


def _read_env_password(path: Path) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and name.strip() == PASSWORD_ENV and value.strip():
            return value.strip()
    return None


def _write_atomic(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True, slots=True)
class Generated:
    """What :func:`generate` wrote."""

    devices: list[Device]
    files: list[Path]
    credentials: Path
    new_passwords: list[str]  # device ids whose password is new (the broker must learn them)


def generate(
    plan: Plan, out: Path, *, force: bool = False, rotate: bool = False, template: Path = TEMPLATE
) -> Generated:
    """Write every device's YAML and ``.env`` and merge ``credentials.json`` in ``out``.

    Refuses (raising :class:`GenerateError` with every reason, before writing
    anything) ids that do not match the contract pattern, existing files or
    credentials without ``force``, and any config that does not validate. With
    ``force`` an existing ``.env`` keeps its password unless ``rotate``.
    """
    planned = devices(plan)
    problems = _check_plan(plan, planned)
    if problems:
        raise GenerateError(problems)
    out.mkdir(parents=True, exist_ok=True)
    cred_path = out / CREDENTIALS_FILE
    credentials = read_credentials(cred_path)
    text = template.read_text(encoding="utf-8")
    rendered: list[tuple[Device, str, str]] = []
    new_passwords: list[str] = []
    for device in planned:
        yaml_path, env_path = out / f"{device.id}.yaml", out / f"{device.id}.env"
        existing = [p.name for p in (yaml_path, env_path) if p.exists()]
        if device.id in credentials:
            existing.append(f"{CREDENTIALS_FILE}[{device.id}]")
        if existing and not force:
            problems.append(
                f"{device.id}: đã có / already exists: {', '.join(existing)} (--force to replace)"
            )
            continue
        password = None if rotate else _read_env_password(env_path)
        if password is None:
            password = secrets.token_urlsafe(PASSWORD_BYTES)
            new_passwords.append(device.id)
        try:
            body = set_values(text, device_values(plan, device))
        except KeyError as exc:
            raise GenerateError([f"{template}: mẫu thiếu khóa / template lacks {exc}"]) from None
        problems += _validate(body, device, plan, password, out)
        rendered.append((device, body, password))
    if problems:
        raise GenerateError(problems)
    header = (
        f"# Sinh bởi / generated by: kiemdich devices generate ({plan.checkpoint_id}).\n"
        f"# Mật khẩu MQTT trong / the MQTT password is in {PASSWORD_ENV} (<device-id>.env).\n"
    )
    files: list[Path] = []
    for device, body, password in rendered:
        yaml_path, env_path = out / f"{device.id}.yaml", out / f"{device.id}.env"
        _write_atomic(yaml_path, header + body, 0o644)
        _write_atomic(env_path, f"{PASSWORD_ENV}={password}\n", 0o600)
        files += [yaml_path, env_path]
        credentials[device.id] = password
    _write_atomic(cred_path, json.dumps(credentials, indent=2, sort_keys=True) + "\n", 0o600)
    return Generated(planned, files, cred_path, new_passwords)


class _DeviceEnv(Mapping[str, str]):
    """The device's environment as far as validation needs it.

    Other ``${NAME}`` references (an RTSP password in ``--camera``) are the
    installer's to add to the ``.env``; here any value stands in for them.
    """

    def __init__(self, password: str) -> None:
        self._password = password

    def __getitem__(self, name: str) -> str:
        return self._password if name == PASSWORD_ENV else "set-on-the-device"

    def __iter__(self) -> Iterator[str]:
        return iter((PASSWORD_ENV,))

    def __len__(self) -> int:
        return 1


def _validate(body: str, device: Device, plan: Plan, password: str, out: Path) -> list[str]:
    """Problems of the rendered config, as the device will read it."""
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{device.id}.", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        config = load_config(tmp, env=_DeviceEnv(password))
    except ConfigError as exc:
        return [f"{device.id}.yaml: {line.partition(': ')[2] or line}" for line in exc.errors]
    finally:
        Path(tmp).unlink(missing_ok=True)
    return _check_rendered(config, device, plan)


def _check_rendered(config: EdgeConfig, device: Device, plan: Plan) -> list[str]:
    """The values that matter came through the template edit."""
    got = (
        config.device.id,
        config.device.checkpoint_id,
        config.device.lane,
        config.device.direction.value,
        config.mqtt.username,
        config.mqtt.host,
        config.mqtt.port,
        config.mqtt.tls is not None,
    )
    want = (
        device.id,
        plan.checkpoint_id,
        device.lane,
        device.direction,
        device.id,
        plan.broker_host,
        plan.broker_port,
        plan.tls,
    )
    if got != want:
        return [f"{device.id}.yaml: mẫu sinh sai / template edit lost a value: {got} != {want}"]
    return []


# --- CLI ----------------------------------------------------------------------


def _cmd_generate(args: argparse.Namespace) -> int:
    plan = Plan(
        checkpoint_id=args.checkpoint,
        inbound=args.inbound,
        outbound=args.outbound,
        broker_host=args.broker_host,
        broker_port=args.broker_port or (8883 if args.tls else 1883),
        tls=args.tls,
        ca_file=args.ca_file,
        client_certs=args.client_certs,
        cert_dir=args.cert_dir,
        keyring=args.keyring,
        state_dir=args.state_dir,
        camera=args.camera,
        prefix=args.prefix,
    )
    try:
        result = generate(plan, args.out, force=args.force, rotate=args.rotate_passwords)
    except GenerateError as exc:
        for problem in exc.problems:
            print(f"lỗi / error: {problem}", file=sys.stderr)
        print("Không ghi gì / nothing was written.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lỗi / error: {exc}", file=sys.stderr)
        return 1
    print(f"Đã ghi / wrote {len(result.devices)} thiết bị / devices in {args.out}:")
    for device in result.devices:
        print(
            f"  {device.id:<28} lane {device.lane:<2} {device.direction:<3} "
            f"{device.id}.yaml {device.id}.env (0600)"
        )
    print(
        f"  {result.credentials} (0600, {len(result.new_passwords)} mật khẩu mới / new passwords)"
    )
    print(
        "\nTiếp theo / next:\n"
        f"  1. Broker: kiemdich broker files --credentials {result.credentials} --out DIR "
        "--service aggregator=ENV_VAR, then kill -HUP the broker.\n"
        "     ACL không cần sửa / no ACL change needed: its lines are patterns on the username "
        "(pattern write kd/v1/dev/%u/scan ...), so a new device id is covered as it is.\n"
        "  2. Each gate: copy <id>.yaml and <id>.env to /etc/kiemdich/ (env: root, mode 0600),\n"
        "     then systemctl enable --now kiemdich-edge@<id> (firmware_config/raspberry-pi.md)."
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``devices`` group (``devices generate``); the leaf sets ``func(args) -> int``."""
    group = subparsers.add_parser("devices", help="Thiết bị cổng / gate device files")
    actions = group.add_subparsers(dest="devices_command", required=True)
    gen = actions.add_parser(
        "generate",
        help="Sinh cấu hình thiết bị cho một chốt / write device configs for a checkpoint",
        description=(
            "Một thiết bị mỗi làn / one device per lane: <id>.yaml (from example-gate.yaml), "
            "<id>.env (0600, random MQTT password) and credentials.json for "
            "'kiemdich broker files --credentials'."
        ),
    )
    gen.add_argument("--checkpoint", required=True, help="mã chốt / checkpoint id")
    gen.add_argument("--inbound", type=int, default=1, help="số làn vào / inbound lanes (1)")
    gen.add_argument("--outbound", type=int, default=0, help="số làn ra / outbound lanes (0)")
    gen.add_argument("--broker-host", required=True, help="máy chủ MQTT / broker host")
    gen.add_argument("--broker-port", type=int, help="default 8883 with TLS, 1883 without")
    tls = gen.add_mutually_exclusive_group()
    tls.add_argument("--tls", dest="tls", action="store_true", default=True, help="(default)")
    tls.add_argument("--no-tls", dest="tls", action="store_false", help="plain TCP (trusted LAN)")
    gen.add_argument("--ca-file", default="/etc/kiemdich/ca.pem", help="CA on the device")
    gen.add_argument(
        "--client-certs",
        action="store_true",
        help="also use client certificates <cert-dir>/<id>.crt/.key (make-ca.sh device)",
    )
    gen.add_argument("--cert-dir", default="/etc/kiemdich", help="client certificates' directory")
    gen.add_argument(
        "--keyring", help="keyring path on the device (default <state-dir>/<id>/keyring.json)"
    )
    gen.add_argument("--state-dir", default="/var/lib/kiemdich", help="outbox, deny-list, keyring")
    gen.add_argument("--camera", default="v4l2:/dev/video0", help="camera.source for every lane")
    gen.add_argument("--prefix", help="device id prefix (default: the checkpoint id)")
    gen.add_argument("--out", type=Path, required=True, help="thư mục ra / output directory")
    gen.add_argument("--force", action="store_true", help="replace existing files")
    gen.add_argument(
        "--rotate-passwords", action="store_true", help="with --force: new passwords too"
    )
    gen.set_defaults(func=_cmd_generate)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m firmware_config.generate --checkpoint ...``."""
    parser = argparse.ArgumentParser(prog="kiemdich")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["devices", "generate", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
