"""What a city installs at a gate: systemd notify/watchdog, unit, config generator, private CA."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract.token import Keyring
from edge import systemd
from edge.agent import EdgeAgent
from edge.config import load_config
from firmware_config.generate import GenerateError, Plan, generate, main
from tests.fixtures.mqtt import Broker, BrokerFactory, _wait_listening, free_port

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware_config"
UNIT = FIRMWARE / "kiemdich-edge@.service"
MAKE_CA = FIRMWARE / "make-ca.sh"


# --- sd_notify ----------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's, and its path."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()


def test_notify_is_a_no_op_outside_systemd() -> None:
    assert systemd.notify("READY=1", environ={}) is False
    assert systemd.watchdog_interval(environ={}) is None
    assert systemd.watchdog_interval(environ={"WATCHDOG_USEC": "0"}) is None
    assert systemd.watchdog_interval(environ={"WATCHDOG_USEC": "x"}) is None


def test_watchdog_interval_belongs_to_this_process_only() -> None:
    mine = {"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.watchdog_interval(environ=mine) == 60.0
    assert systemd.watchdog_interval(environ={**mine, "WATCHDOG_PID": "1"}) is None


def test_notify_reaches_path_and_abstract_sockets(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1"
    assert systemd.status("camera ok\nsecond line", environ={"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"STATUS=camera ok second line"

    name = f"kiemdich-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind("\0" + name)
        assert systemd.notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert abstract.recv(4096) == b"WATCHDOG=1"
    # Nobody listening: reported, never raised.
    assert not systemd.notify("READY=1", environ={"NOTIFY_SOCKET": path + ".gone"})


def _gate_config(tmp_path: Path, broker: Broker, keyring: Keyring) -> Path:
    keyring_path = tmp_path / "keyring.json"
    keyring.save(keyring_path)
    config = tmp_path / "gate.yaml"
    config.write_text(
        f"""
device: {{id: gate-sd-1, checkpoint_id: hn-test, lane: 1, direction: in}}
camera:
  source: "synthetic:"
  loop: true
  synthetic: {{seed: 3, seconds: 4, cars_per_minute: 30}}
verify: {{keyring: {keyring_path}, denylist_cache: {tmp_path}/deny.json}}
mqtt: {{host: {broker.host}, port: {broker.port}}}
outbox: {{path: {tmp_path}/outbox.sqlite3}}
display: {{web: {{port: 0}}}}
metrics: {{host: 127.0.0.1, port: 0}}
status_interval_s: 1
"""
    )
    return config


def test_agent_under_systemd_sends_ready_watchdog_and_stopping(
    tmp_path: Path,
    mosquitto: Broker,
    keyring: Keyring,
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    config = _gate_config(tmp_path, mosquitto, keyring)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "2000000",  # a keep-alive every second
    }
    env.pop("WATCHDOG_PID", None)
    cmd = [sys.executable, "-m", "kiemdich.cli", "edge", "--config", str(config)]
    agent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    received: list[str] = []
    sock.settimeout(1.0)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and agent.poll() is None:
            try:
                received.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
            # The first keep-alive may come just before READY=1 (the watchdog thread is
            # the last start-up step): count those after it.
            if (
                "READY=1" in received
                and received[received.index("READY=1") :].count("WATCHDOG=1") >= 2
            ):
                break
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    sock.settimeout(0)
    while True:
        try:
            received.append(sock.recv(4096).decode())
        except BlockingIOError:
            break
    assert "READY=1" in received, err.decode()[-2000:]
    ready = received.index("READY=1")
    assert received[ready:].count("WATCHDOG=1") >= 2, received
    assert any(line.startswith("STATUS=camera ") for line in received), received
    assert "STOPPING=1" in received[ready:], received
    assert agent.returncode == 0


def test_watchdog_withheld_while_decode_thread_is_dead(
    tmp_path: Path,
    mosquitto: Broker,
    keyring: Keyring,
    notify_socket: tuple[socket.socket, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sock, path = notify_socket
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    agent = EdgeAgent(load_config(_gate_config(tmp_path, mosquitto, keyring)))
    # Not started: no decode thread, so no keep-alive.
    assert not agent.liveness().healthy
    assert agent.watchdog_tick() is False
    assert sock.recv(4096).startswith(b"STATUS=unhealthy")
    agent.start()
    try:
        assert agent.liveness().healthy, agent.liveness().reasons
        assert agent.watchdog_tick() is True
        assert sock.recv(4096).startswith(b"STATUS=camera ")  # recovered: status line again
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert agent.watchdog_tick() is True
        assert sock.recv(4096) == b"WATCHDOG=1"

        dead = threading.Thread(target=lambda: None)
        dead.start()
        dead.join()
        live = agent._decode_thread
        agent._decode_thread = dead  # what a crashed decode loop leaves behind
        assert agent.liveness().reasons == ["decode: decode thread is not running"]
        assert agent.watchdog_tick() is False
        sent = sock.recv(4096).decode()
        assert sent.startswith("STATUS=unhealthy") and "decode thread" in sent
        with pytest.raises(BlockingIOError):
            sock.recv(4096)  # no WATCHDOG=1 after the STATUS line

        agent._decode_thread = live
        assert agent.watchdog_tick() is True
        assert sock.recv(4096).startswith(b"STATUS=camera ")
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        agent.stop()


# --- the unit file ------------------------------------------------------------------

REQUIRED_UNIT = {
    "Unit": {
        "After": "network-online.target time-sync.target",
        "StartLimitIntervalSec": None,
        "StartLimitBurst": None,
    },
    "Service": {
        "Type": "notify",
        "ExecStart": "/opt/kiemdich/.venv/bin/kiemdich edge --config /etc/kiemdich/%i.yaml",
        "EnvironmentFile": "/etc/kiemdich/%i.env",
        "WatchdogSec": "60",
        "Restart": "always",
        "RestartSec": "5",
        "User": "kiemdich",
        "SupplementaryGroups": "video",
        "StateDirectory": "kiemdich/%i",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/kiemdich/%i",
        "PrivateTmp": "true",
        "NoNewPrivileges": "true",
    },
    "Install": {"WantedBy": "multi-user.target"},
}


def test_unit_file_has_the_required_settings(figures: object) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    for section, keys in REQUIRED_UNIT.items():
        for key, value in keys.items():
            assert parser.has_option(section, key), f"[{section}] {key} missing"
            if value is not None:
                assert parser.get(section, key) == value, f"[{section}] {key}"


def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed; the configparser test checked the keys")
    kiemdich = ROOT / ".venv" / "bin" / "kiemdich"
    if not kiemdich.exists():
        pytest.skip(f"{kiemdich} missing: verify needs an executable ExecStart")
    # verify checks that ExecStart exists, so point it at this checkout's venv.
    unit = tmp_path / "kiemdich-edge@gate-1.service"
    unit.write_text(UNIT.read_text().replace("/opt/kiemdich/.venv/bin/kiemdich", str(kiemdich)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # Unknown keys and bad values are only warnings (exit 0), so stderr must be empty too.
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


# --- the config generator ---------------------------------------------------------


def _plan(**overrides: object) -> Plan:
    base: dict[str, object] = {
        "checkpoint_id": "hn-cau-giay",
        "inbound": 2,
        "outbound": 1,
        "broker_host": "mqtt.example.vn",
        "client_certs": True,
    }
    return Plan(**{**base, **overrides})  # type: ignore[arg-type]


def test_generate_writes_valid_configs_env_files_and_credentials(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "credentials.json").write_text(json.dumps({"other-gate": "kept"}))
    result = generate(_plan(), out)
    ids = [d.id for d in result.devices]
    assert ids == ["hn-cau-giay-in1", "hn-cau-giay-in2", "hn-cau-giay-out3"]
    credentials = json.loads((out / "credentials.json").read_text())
    assert credentials.keys() == {"other-gate", *ids} and credentials["other-gate"] == "kept"
    assert stat.S_IMODE((out / "credentials.json").stat().st_mode) == 0o600
    passwords = set()
    for device in result.devices:
        env_file = out / f"{device.id}.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        name, _, password = env_file.read_text().strip().partition("=")
        assert name == "KIEMDICH_MQTT_PASSWORD" and credentials[device.id] == password
        passwords.add(password)
        text = (out / f"{device.id}.yaml").read_text()
        assert "${KIEMDICH_MQTT_PASSWORD}" in text and password not in text
        assert "# mã thiết bị" in text  # the template's comments survive
        config = load_config(out / f"{device.id}.yaml", env={"KIEMDICH_MQTT_PASSWORD": password})
        assert config.device.id == device.id and config.mqtt.username == device.id
        assert config.device.direction.value == device.direction
        assert config.device.lane == device.lane
        assert config.mqtt.password is not None
        assert config.mqtt.password.get_secret_value() == password
        assert config.mqtt.tls is not None
        assert str(config.mqtt.tls.cert_file) == f"/etc/kiemdich/{device.id}.crt"
        assert str(config.outbox.path) == f"/var/lib/kiemdich/{device.id}/outbox.sqlite3"
        assert str(config.verify.keyring) == f"/var/lib/kiemdich/{device.id}/keyring.json"
    assert len(passwords) == 3


def test_generate_plain_tcp_and_ip_camera(tmp_path: Path) -> None:
    plan = _plan(
        tls=False, broker_port=1883, camera="rtsp://cam:${CAM_PASSWORD}@10.0.0.9/s", outbound=0
    )
    generate(plan, tmp_path)
    config = load_config(
        tmp_path / "hn-cau-giay-in1.yaml",
        env={"KIEMDICH_MQTT_PASSWORD": "p", "CAM_PASSWORD": "c"},
    )
    assert config.mqtt.tls is None and config.mqtt.port == 1883
    assert config.camera.exposure is None and config.camera.width is None


def test_generate_refuses_bad_ids_and_existing_files(tmp_path: Path) -> None:
    with pytest.raises(GenerateError, match="invalid checkpoint id"):
        generate(_plan(checkpoint_id="Hà-Nội"), tmp_path)
    with pytest.raises(GenerateError, match="invalid device id"):
        generate(_plan(checkpoint_id="a" * 63), tmp_path)
    assert list(tmp_path.iterdir()) == []

    first = generate(_plan(), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(GenerateError, match="already exists") as refused:
        generate(_plan(), tmp_path)
    assert len(refused.value.problems) == 3
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    # --force rewrites the configs but keeps the passwords the broker already knows...
    again = generate(_plan(broker_host="mqtt2.example.vn"), tmp_path, force=True)
    assert again.new_passwords == []
    assert json.loads((tmp_path / "credentials.json").read_bytes()) == json.loads(
        before["credentials.json"]
    )
    assert "mqtt2.example.vn" in (tmp_path / f"{first.devices[0].id}.yaml").read_text()
    # ...unless asked to rotate them.
    rotated = generate(_plan(), tmp_path, force=True, rotate=True)
    assert len(rotated.new_passwords) == 3


def test_generate_cli_reports_and_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--checkpoint", "hn-cau-giay", "--inbound", "1", "--broker-host", "h", "--out"]
    assert main([*args, str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "hn-cau-giay-in1" in printed and "pattern write kd/v1/dev/%u/scan" in printed
    assert main([*args, str(tmp_path)]) == 1
    assert "nothing was written" in capsys.readouterr().err


def test_generated_credentials_feed_the_broker_files(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy", reason="kiemdich broker files is part of .[aggregator]")
    generate(_plan(), tmp_path / "gen")
    from aggregator.broker import load_credentials

    creds = load_credentials(tmp_path / "gen" / "credentials.json")
    assert set(creds) == {"hn-cau-giay-in1", "hn-cau-giay-in2", "hn-cau-giay-out3"}


# --- the private CA -----------------------------------------------------------------


def _make_ca(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(MAKE_CA), *args], capture_output=True, text=True, check=False
    )


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    ca = tmp_path / "ca"
    for args in (
        ("init", str(ca)),
        ("broker", str(ca), "localhost"),
        ("device", str(ca), "gate-1"),
    ):
        done = _make_ca(*args)
        assert done.returncode == 0, done.stderr
    return ca


def test_make_ca_issues_verifiable_certificates_idempotently(ca_dir: Path) -> None:
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((ca_dir / "devices" / "gate-1.key").stat().st_mode) == 0o600
    for cert in (ca_dir / "server.crt", ca_dir / "devices" / "gate-1.crt"):
        done = subprocess.run(
            ["openssl", "verify", "-CAfile", str(ca_dir / "ca.crt"), str(cert)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(ca_dir / "server.crt")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:localhost" in text
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", str(ca_dir / "devices/gate-1.crt")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CN = gate-1" in subject

    before = {p: p.read_bytes() for p in ca_dir.rglob("*") if p.is_file()}
    for args in (("init", str(ca_dir)), ("device", str(ca_dir), "gate-1")):
        assert _make_ca(*args).returncode == 0
    assert {p: p.read_bytes() for p in ca_dir.rglob("*") if p.is_file()} == before

    assert _make_ca("device", str(ca_dir), "Bad Id").returncode == 1
    assert _make_ca("device", str(ca_dir / "nope"), "gate-2").returncode == 1
    usage = _make_ca()
    assert usage.returncode == 2 and "make-ca.sh init" in usage.stderr


def _connect(port: int, ca: Path, cert: Path | None, key: Path | None) -> str:
    """Connect over TLS; the CONNACK's reason, or why there was none."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gate-1", protocol=mqtt.MQTTv311)
    client.tls_set(
        ca_certs=str(ca),
        certfile=str(cert) if cert else None,
        keyfile=str(key) if key else None,
    )
    outcome: list[str] = []
    done = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        outcome.append(str(reason))
        done.set()

    def on_disconnect(*_args: object) -> None:
        outcome.append("disconnected")
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect("localhost", port, keepalive=10)
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc}"
    client.loop_start()
    try:
        done.wait(15)
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome[0] if outcome else "no answer"


def test_broker_with_ca_certs_accepts_device_cert_and_refuses_no_cert(
    ca_dir: Path, mosquitto_factory: BrokerFactory
) -> None:
    tls_port = free_port()
    broker = mosquitto_factory(
        extra=(
            f"listener {tls_port} 127.0.0.1\n"
            f"cafile {ca_dir}/ca.crt\n"
            f"certfile {ca_dir}/server.crt\n"
            f"keyfile {ca_dir}/server.key\n"
            "require_certificate true\n"
            "use_identity_as_username true\n"
        )
    )
    _wait_listening("127.0.0.1", tls_port, broker.process, broker.log)
    device = ca_dir / "devices"
    accepted = _connect(tls_port, ca_dir / "ca.crt", device / "gate-1.crt", device / "gate-1.key")
    assert accepted == "Success", broker.log.read_text()[-2000:]
    refused = _connect(tls_port, ca_dir / "ca.crt", None, None)
    assert refused != "Success", refused
