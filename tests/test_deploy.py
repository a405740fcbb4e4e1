"""The production shape: docker-compose.yml, the image's build context, the Grafana dashboards.

There is no Docker engine on a test machine, so the compose file is checked by
``docker-compose config`` and its pieces are run for real, outside containers:

- the rendered configuration (every secret set to a random test value): services,
  start order, health checks, volumes, secrets only from the environment, the sim
  profile; a missing or empty secret stops ``docker-compose`` with a message naming it;
- the aggregators' environment passes ``kiemdich aggregator run --validate-config``
  in production;
- the broker: broker-init's command, taken from the rendered file, writes the password
  file; mosquitto then runs with the files the compose file mounts, found through the
  service's own volume list (named volumes become directories under ``tmp``). What is
  adapted: paths, the listener's port and address, ``user root`` when tests run as root.
  Who may publish what under that ACL is tests/test_broker_auth.py's job;
- the dashboards: provisioning consistent with the compose mounts, and every panel query
  returning data from a real VictoriaMetrics after the compose sim flow ran end to end
  (migrate, sim-population's script, broker-init, mosquitto, a real aggregator with
  aggregator-1's environment, simulated gates driven through ``simulators.city``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from aggregator.db.engine import make_engine
from aggregator.db.schema import alerts, passages
from aggregator.service import AggregatorService
from aggregator.settings import AggregatorSettings
from contract.topics import DEVICE_ID_PATTERN
from simulators.city import CityConfig, run_city
from tests.fixtures.mqtt import free_port
from tests.fixtures.tsdb import force_flush, query

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DASHBOARDS = REPO / "dashboards"
VENV_BIN = Path(sys.executable).parent
# Random per run: a value that shows up where it should cannot have come from the file.
SECRETS = {
    "POSTGRES_PASSWORD": f"pg-{secrets.token_hex(8)}",
    "KIEMDICH_MQTT_PASSWORD": f"mqtt-{secrets.token_hex(8)}",
    "KIEMDICH_TSDB_TOKEN": f"tsdb-{secrets.token_hex(8)}",
    "GRAFANA_ADMIN_PASSWORD": f"gf-{secrets.token_hex(8)}",
}
KIEMDICH_SERVICES = {
    "broker-init",
    "migrate",
    "aggregator-1",
    "aggregator-2",
    "sim-population",
    "sim-city",
}
SIM_SERVICES = {"sim-population", "sim-city"}
NOT_AUTHORIZED = 135
# Grafana's built-in variables, as a dashboard over the last hour with a 15 s step sees them.
GRAFANA_MACROS = {
    "$__rate_interval": "1m",
    "$__interval_ms": "15000",
    "$__interval": "15s",
    "$__range_ms": "3600000",
    "$__range_s": "3600",
    "$__range": "1h",
}

Figures = Callable[[str], None]


# --- docker-compose --------------------------------------------------------------------


def _compose_binary() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.skip("docker-compose is not installed (make test installs it with apt-get)")
    return found


def compose(
    *args: str, env: dict[str, str], env_file: Path, profile: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker-compose [--profile P] ...`` with exactly ``env`` and ``env_file`` (no shell env)."""
    base = [_compose_binary(), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE)]
    base += ["--env-file", str(env_file)]
    if profile:
        base += ["--profile", profile]
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [*base, *args],
        env={**clean, **env},
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def no_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty env file: a developer's own .env must not change what the tests see."""
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def rendered(no_env_file: Path) -> dict[str, Any]:
    """``docker-compose --profile sim config`` with every secret set, parsed."""
    result = compose("config", env=SECRETS, env_file=no_env_file, profile="sim")
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


@dataclass(frozen=True)
class Mounts:
    """One service's volumes as the test sees them: container path -> host path.

    Bind mounts point into the repository; a named volume is a directory under
    ``volumes_dir`` shared by every service that mounts it, as on a Docker host.
    """

    table: tuple[tuple[str, Path], ...]

    @classmethod
    def of(cls, service: dict[str, Any], volumes_dir: Path) -> Mounts:
        rows: list[tuple[str, Path]] = []
        for spec in service.get("volumes", []):
            if isinstance(spec, dict):
                source, target = str(spec["source"]), str(spec["target"])
            else:
                source, target = str(spec).split(":")[:2]
            if source.startswith(("/", ".")):
                host = Path(source)
            else:
                host = volumes_dir / source
                host.mkdir(parents=True, exist_ok=True)
            rows.append((target.rstrip("/"), host))
        rows.sort(key=lambda row: len(row[0]), reverse=True)
        return cls(tuple(rows))

    def resolve(self, container_path: str) -> Path:
        """Where ``container_path`` is on the host; fails if no volume holds it."""
        for target, host in self.table:
            if container_path == target or container_path.startswith(target + "/"):
                return host / container_path[len(target) :].lstrip("/")
        raise AssertionError(f"{container_path} is on none of the service's volumes")

    def host_path(self, container_path: str) -> str:
        """Like :meth:`resolve`, as text, keeping a trailing slash."""
        slash = "/" if container_path.endswith("/") else ""
        return f"{self.resolve(container_path.rstrip('/'))}{slash}"


def test_compose_renders_every_service_with_secrets_from_the_environment(
    rendered: dict[str, Any], no_env_file: Path
) -> None:
    services = rendered["services"]
    assert set(services) == {
        *KIEMDICH_SERVICES,
        "mosquitto",
        "postgres",
        "victoria-metrics",
        "grafana",
    }
    images = {services[name]["image"] for name in KIEMDICH_SERVICES}
    assert len(images) == 1, images

    def waits_for(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    healthy, done = "service_healthy", "service_completed_successfully"
    assert waits_for("mosquitto") == {"broker-init": done}
    assert waits_for("migrate") == {"postgres": healthy}
    assert waits_for("grafana") == {"victoria-metrics": healthy}
    assert waits_for("sim-population") == {"migrate": done}
    assert waits_for("sim-city") == {
        "sim-population": done,
        "aggregator-1": healthy,
        "aggregator-2": healthy,
    }
    for name in ("aggregator-1", "aggregator-2"):
        assert waits_for(name) == {
            "migrate": done,
            "mosquitto": healthy,
            "victoria-metrics": healthy,
        }
        assert services[name]["command"] == ["aggregator", "run"]
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"])
    # Every dependency waited on for health has a health check.
    for name in ("postgres", "mosquitto", "victoria-metrics", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["victoria-metrics"]["healthcheck"]["test"])

    # Two aggregators, one shared stream, two broker sessions: distinct, stable client ids.
    ids = {_env(services[n])["KIEMDICH_CLIENT_ID"] for n in ("aggregator-1", "aggregator-2")}
    assert ids == {"aggregator-1", "aggregator-2"}

    # State lives in named volumes, never in a container's own layer.
    declared = set(rendered["volumes"])
    for name, target in (
        ("postgres", "/var/lib/postgresql/data"),
        ("victoria-metrics", "/storage"),
        ("grafana", "/var/lib/grafana"),
        ("mosquitto", "/mosquitto/data"),
    ):
        sources = [
            str(v).split(":")[0] for v in services[name]["volumes"] if f":{target}" in str(v)
        ]
        assert len(sources) == 1 and sources[0] in declared, (name, sources)

    # Secrets: each test value arrives where it is needed, and none is in the file itself.
    source = COMPOSE_FILE.read_text(encoding="utf-8")
    for value in SECRETS.values():
        assert value not in source
    agg = _env(services["aggregator-1"])
    assert agg["KIEMDICH_MQTT_PASSWORD"] == SECRETS["KIEMDICH_MQTT_PASSWORD"]
    assert agg["KIEMDICH_TSDB_TOKEN"] == SECRETS["KIEMDICH_TSDB_TOKEN"]
    assert f":{SECRETS['POSTGRES_PASSWORD']}@postgres:5432/" in agg["KIEMDICH_DB_URL"]
    assert _env(services["postgres"])["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    assert (
        _env(services["grafana"])["GF_SECURITY_ADMIN_PASSWORD"]
        == (SECRETS["GRAFANA_ADMIN_PASSWORD"])
    )
    secretish = re.compile(r"PASSWORD|TOKEN|SECRET")
    for name, service in services.items():
        for key, value in _env(service).items():
            if secretish.search(key) and not key.endswith("_FILE"):
                assert value in SECRETS.values(), (name, key)

    # The simulation only joins with its profile.
    profiles = {name: service.get("profiles", []) for name, service in services.items()}
    assert {name for name, p in profiles.items() if p} == SIM_SERVICES
    assert all(profiles[name] == ["sim"] for name in SIM_SERVICES)
    listed = compose("config", "--profiles", env=SECRETS, env_file=no_env_file)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["sim"]


@pytest.mark.parametrize("secret", sorted(SECRETS))
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_compose_refuses_to_start_without_a_secret(
    secret: str, how: str, no_env_file: Path
) -> None:
    env = {k: v for k, v in SECRETS.items() if k != secret}
    if how == "empty":
        env[secret] = ""
    result = compose("config", env=env, env_file=no_env_file, profile="sim")
    assert result.returncode != 0
    assert f"set {secret} in .env" in result.stderr, result.stderr


def test_env_example_documents_every_variable_and_holds_no_secret(tmp_path: Path) -> None:
    source = COMPOSE_FILE.read_text(encoding="utf-8")
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", source))
    required = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*):\?", source))
    assert required == set(SECRETS)
    documented: dict[str, str] = {}
    active: set[str] = set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(#?)([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            documented[match.group(2)] = match.group(3)
            if not match.group(1):
                active.add(match.group(2))
    assert used <= set(documented), sorted(used - set(documented))
    # Secrets are listed to be filled in, with no value; everything else is commented out.
    assert active == required
    assert all(documented[name] == "" for name in required)
    # Copied as it ships, the example refuses to start.
    result = compose("config", env={}, env_file=ENV_EXAMPLE)
    assert result.returncode != 0
    assert "in .env" in result.stderr, result.stderr


def test_aggregator_environment_is_valid_in_production(rendered: dict[str, Any]) -> None:
    env = _env(rendered["services"]["aggregator-1"])
    assert env["KIEMDICH_ENVIRONMENT"] == "production"
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def validate(**changes: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kiemdich.cli", "aggregator", "run", "--validate-config"],
            env={**base, **env, **changes},
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
            cwd=REPO,
        )

    ok = validate()
    assert ok.returncode == 0, ok.stderr
    shown = ok.stdout
    for line in (
        "environment = production",
        "client_id = aggregator-1",
        "mqtt_host = mosquitto",
        "mqtt_username = aggregator",
        "migrate_on_start = False",
        "tsdb_url = http://victoria-metrics:8428",
        "keyring_path = /etc/kiemdich/keyring/keyring.json",
    ):
        assert line in shown, (line, shown)
    assert SECRETS["POSTGRES_PASSWORD"] not in shown
    # The same file with a demo password is refused: production really is production here.
    refused = validate(KIEMDICH_MQTT_PASSWORD="changeme")
    assert refused.returncode == 2
    assert "demo password" in refused.stderr

    # The admin page's broker file setting points at broker-init's output.
    from aggregator.web.settings import WebSettings

    web = {k.removeprefix("KIEMDICH_WEB_").lower(): v for k, v in env.items() if "_WEB_" in k}
    passwd = WebSettings(**web).broker_passwd_file
    broker_init = rendered["services"]["broker-init"]["command"]
    assert passwd is not None
    assert str(passwd.parent) == broker_init[broker_init.index("--out") + 1]


# --- the image ---------------------------------------------------------------------------


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether the Docker build context leaves ``path`` out (last matching rule wins)."""
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(p, pattern) for p in prefixes):
            excluded = not negate
    return excluded


def test_build_context_holds_what_the_dockerfile_installs_and_no_secrets() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied: list[str] = []
    for line in dockerfile.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied += words[1:-1]
    packages = {
        p.rstrip("*")
        for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]["find"]["include"]
    }
    # Every package pyproject.toml installs is copied in, with what it needs to build.
    assert packages | {"pyproject.toml", "README.md"} <= set(copied), copied
    for item in copied:
        assert (REPO / item).exists(), item
        assert not _dockerignore_excludes(item, patterns), item
        assert not _dockerignore_excludes(f"{item}/x.py", patterns), item
    for private in (".env", "keyring/keyring.json", "var/demo/secrets/aggregator", ".git/HEAD"):
        assert _dockerignore_excludes(private, patterns), private
    assert _dockerignore_excludes("aggregator/__pycache__/x.cpython-311.pyc", patterns)
    # The image: installs the aggregator and the simulators, runs as a non-root user.
    assert "pip install '.[aggregator,sim]'" in dockerfile
    user = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*/healthz", dockerfile, re.M | re.S)
    assert 'ENTRYPOINT ["kiemdich"]' in dockerfile


# --- the broker ----------------------------------------------------------------------------


def _run_kiemdich(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    return subprocess.run(
        [sys.executable, "-m", "kiemdich.cli", *args],
        env={"PATH": path, **env},
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def _in_container_paths(args: list[str], mounts: Mounts) -> list[str]:
    return [mounts.host_path(a) if a.startswith("/") else a for a in args]


def run_broker_init(rendered: dict[str, Any], volumes: Path, db_url: str) -> None:
    """broker-init's command as the compose file has it, on the test's volume directories."""
    service = rendered["services"]["broker-init"]
    args = _in_container_paths(service["command"], Mounts.of(service, volumes))
    result = _run_kiemdich(args, {**_env(service), "KIEMDICH_DB_URL": db_url})
    assert result.returncode == 0, result.stderr


def adapt_broker_conf(text: str, mounts: Mounts, port: int) -> str:
    """mosquitto's compose config with container paths made host paths and a test port."""
    lines = ["user root"] if os.geteuid() == 0 else []  # as tests/fixtures/mqtt.py does
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if line.startswith("#"):
            lines.append(line)
        elif key == "listener" and value == "1883":
            lines.append(f"listener {port} 127.0.0.1")
        elif value.startswith("/mosquitto/"):
            lines.append(f"{key} {mounts.host_path(value)}")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class ComposeBroker:
    """mosquitto running with the compose service's files."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def start_compose_broker(rendered: dict[str, Any], volumes: Path, workdir: Path) -> ComposeBroker:
    """Start mosquitto from the files the compose service mounts (broker-init ran first)."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    mounts = Mounts.of(rendered["services"]["mosquitto"], volumes)
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        adapt_broker_conf(
            mounts.resolve("/mosquitto/config/mosquitto.conf").read_text(), mounts, port
        )
    )
    log = workdir / "mosquitto.log"
    process = subprocess.Popen(
        [exe, "-c", str(conf)], stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    broker = ComposeBroker(port, process, log)
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            pytest.fail(f"mosquitto exited: {log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return broker
        if time.monotonic() > deadline:
            broker.stop()
            pytest.fail(f"mosquitto did not listen: {log.read_text()}")
        time.sleep(0.05)


def connack(port: int, username: str | None, password: str | None) -> int:
    """The CONNACK reason code mosquitto answers an MQTT 5 login with."""
    answered: list[int] = []
    done = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"deploy-{secrets.token_hex(4)}",
        protocol=mqtt.MQTTv5,
    )
    if username is not None:
        client.username_pw_set(username, password)

    def on_connect(*args: Any) -> None:
        answered.append(int(args[3].value))
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    client.disconnect()
    client.loop_stop()
    return answered[0]


def _issue_admin_device(db_url: str, device_id: str) -> Any:
    from aggregator.auth.device_credentials import issue_device
    from aggregator.db.engine import make_engine
    from aggregator.db.fleet import upsert_checkpoint
    from aggregator.db.migrate import upgrade
    from aggregator.db.schema import CheckpointKind, DeviceDirection

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            upsert_checkpoint(
                conn,
                id="hn-admin-gate",
                name="Chốt thử / test gate",
                kind=CheckpointKind.SIDE_ROAD,
                ward_code=337,
                lat=20.95,
                lon=105.84,
            )
            return issue_device(
                conn,
                device_id=device_id,
                checkpoint_id="hn-admin-gate",
                lane=0,
                direction=DeviceDirection.IN,
            )
    finally:
        engine.dispose()


def test_broker_runs_with_the_files_compose_mounts(
    rendered: dict[str, Any], tmp_path: Path
) -> None:
    volumes = tmp_path / "volumes"
    services = rendered["services"]
    devices = {"hn-ql1a-phapvan-in-1": secrets.token_urlsafe(12)}
    # What an operator imports into the device-credentials volume (docs/deploy.md).
    creds = Mounts.of(services["broker-init"], volumes).resolve(
        "/var/lib/kiemdich/devices/credentials.json"
    )
    creds.write_text(json.dumps(devices))
    # A gate issued on the admin page exists only in the registry (its broker hash).
    db_url = f"sqlite:///{tmp_path / 'registry.db'}"
    issued = _issue_admin_device(db_url, "hn-admin-gate-1")
    run_broker_init(rendered, volumes, db_url)

    broker_mounts = Mounts.of(services["mosquitto"], volumes)
    # The config and ACL mosquitto gets are the repository's files...
    conf = broker_mounts.resolve("/mosquitto/config/mosquitto.conf")
    acl = broker_mounts.resolve("/mosquitto/config/acl")
    assert conf == REPO / "firmware_config" / "mosquitto" / "mosquitto.conf"
    assert acl == REPO / "firmware_config" / "mosquitto" / "acl"
    # ...identical to what broker-init renders with the compose file's service accounts, so
    # the ACL names every account the password file holds.
    written = Mounts.of(services["broker-init"], volumes).resolve("/var/lib/kiemdich-broker")
    assert (written / "mosquitto.conf").read_text() == conf.read_text()
    assert (written / "acl").read_text() == acl.read_text()
    passwd = broker_mounts.resolve("/mosquitto/config/passwd")
    assert passwd == written / "passwd"
    assert passwd.stat().st_mode & 0o777 == 0o600
    accounts = {line.split(":")[0] for line in passwd.read_text().splitlines()}
    assert accounts == {*devices, issued.device_id, "aggregator"}
    assert set(re.findall(r"^user (\S+)$", acl.read_text(), re.M)) == {"aggregator"}

    broker = start_compose_broker(rendered, volumes, tmp_path)
    try:
        password = _env(services["aggregator-1"])["KIEMDICH_MQTT_PASSWORD"]
        assert connack(broker.port, "aggregator", password) == 0
        device, device_password = next(iter(devices.items()))
        assert connack(broker.port, device, device_password) == 0
        assert connack(broker.port, issued.mqtt_username, issued.mqtt_password) == 0
        assert connack(broker.port, None, None) == NOT_AUTHORIZED
        assert connack(broker.port, "aggregator", "changeme") == NOT_AUTHORIZED
    finally:
        broker.stop()
    # Persistence went to the mosquitto-data volume.
    assert any(Mounts.of(services["mosquitto"], volumes).resolve("/mosquitto/data").iterdir())


# --- dashboards ----------------------------------------------------------------------------


def _dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))
    }


def _panel_targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def _bilingual(title: str) -> bool:
    vietnamese, sep, english = title.partition(" / ")
    return bool(sep and vietnamese.strip() and english.strip()) and english.isascii()


def test_dashboards_are_provisioned_as_compose_mounts_them(rendered: dict[str, Any]) -> None:
    grafana = rendered["services"]["grafana"]
    mounts = Mounts.of(grafana, Path("/nonexistent"))
    datasources = yaml.safe_load(
        mounts.resolve("/etc/grafana/provisioning/datasources/victoria-metrics.yaml").read_text()
    )["datasources"]
    assert len(datasources) == 1
    ds = datasources[0]
    assert ds["type"] == "prometheus"
    url = urllib.parse.urlsplit(ds["url"])
    assert url.hostname == "victoria-metrics" and url.hostname in rendered["services"]
    assert f"-httpListenAddr=:{url.port}" in rendered["services"]["victoria-metrics"]["command"]
    provider = yaml.safe_load(
        mounts.resolve("/etc/grafana/provisioning/dashboards/kiemdich.yaml").read_text()
    )["providers"][0]
    assert mounts.resolve(provider["options"]["path"]) == DASHBOARDS
    home = _env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounts.resolve(home).is_file()

    boards = _dashboards()
    assert len(boards) >= 3
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert _bilingual(board["title"].split(" — ", 1)[-1]), name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            assert _bilingual(panel["title"]), (name, panel["title"])
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            assert panel["datasource"]["uid"] == ds["uid"], (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
        for panel, target in _panel_targets(board):
            assert target["datasource"]["uid"] == ds["uid"], (name, panel["title"])
            assert target["expr"].strip(), (name, panel["title"])
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == ds["uid"]
            assert _bilingual(variable["label"]), variable["label"]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """A panel's PromQL as Grafana sends it: macros and dashboard variables replaced."""
    for macro in sorted(GRAFANA_MACROS, key=len, reverse=True):
        expr = expr.replace(macro, GRAFANA_MACROS[macro])
    for name, value in variables.items():
        expr = re.sub(rf"\$\{{{name}\}}|\${name}\b|\[\[{name}\]\]", lambda _m, v=value: v, expr)
    assert "$" not in expr, f"unknown Grafana variable left in {expr!r}"
    return expr


def label_values(url: str, definition: str, variables: dict[str, str]) -> list[str]:
    """A ``label_values(selector, label)`` variable query answered by VictoriaMetrics."""
    match = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", definition.strip())
    assert match, f"unsupported variable query {definition!r}"
    selector, label = match.groups()
    params: dict[str, str] = {}
    if selector:
        params["match[]"] = substitute(selector, variables)
    with urllib.request.urlopen(
        f"{url}/api/v1/label/{label}/values?{urllib.parse.urlencode(params)}", timeout=10
    ) as resp:
        values: list[str] = json.loads(resp.read())["data"]
    return values


def _english(title: str) -> str:
    return title.partition(" / ")[2] or title


@pytest.mark.slow
def test_every_dashboard_query_returns_data_after_a_simulated_city(
    rendered: dict[str, Any], tmp_path: Path, victoria_metrics: str, figures: Figures
) -> None:
    services = rendered["services"]
    volumes = tmp_path / "volumes"
    db_url = f"sqlite:///{tmp_path / 'kiemdich.db'}"  # PostgreSQL's place

    # migrate, then sim-population's script with the sim profile's inputs, small.
    migrate = services["migrate"]
    result = _run_kiemdich(migrate["command"], {**_env(migrate), "KIEMDICH_DB_URL": db_url})
    assert result.returncode == 0, result.stderr
    pop = services["sim-population"]
    pop_mounts = Mounts.of(pop, volumes)
    script = pop["command"][0].replace("$$", "$")  # compose's escape for a literal $
    for path in sorted(
        set(re.findall(r"/var/lib/kiemdich[\w/.-]*", script)), key=len, reverse=True
    ):
        script = script.replace(path, pop_mounts.host_path(path))
    entry = pop["entrypoint"]
    assert entry[0] == "/bin/sh"
    pop_env = {**_env(pop), "KIEMDICH_DB_URL": db_url, "SIM_CITIZENS": "400", "SIM_GATES": "3"}
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    result = subprocess.run(
        ["/bin/sh", *entry[1:], script],
        env={"PATH": path, **pop_env},
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    # broker-init picks up the gates' accounts; mosquitto runs with the compose files.
    run_broker_init(rendered, volumes, db_url)
    broker = start_compose_broker(rendered, volumes, tmp_path)

    # aggregator-1 as compose configures it (production), with the sim profile's keyring.
    agg = services["aggregator-1"]
    agg_mounts = Mounts.of(agg, volumes)
    env = _env(agg)
    fields: dict[str, Any] = {
        k.removeprefix("KIEMDICH_").lower(): v
        for k, v in env.items()
        if k.startswith("KIEMDICH_") and not k.startswith("KIEMDICH_WEB_")
    }
    fields.update(
        db_url=db_url,
        mqtt_host="127.0.0.1",
        mqtt_port=broker.port,
        tsdb_url=victoria_metrics,
        keyring_path=agg_mounts.resolve("/var/lib/kiemdich/sim/keyring.json"),
    )
    settings = AggregatorSettings(**fields)
    assert settings.environment.value == "production"
    service = AggregatorService(settings)
    service.start()
    city_mounts = Mounts.of(services["sim-city"], volumes)
    try:
        assert service.consumer.wait_connected(10) and service.control.wait_connected(10)
        time.sleep(0.3)  # SUBACK of the shared subscription
        report = run_city(
            CityConfig(
                host="127.0.0.1",
                port=broker.port,
                gates=3,
                rate=40,
                duration_s=6,
                speedup=600,
                # 08:00 in Hà Nội, not the wall clock's hour: the same traffic at any time.
                start=datetime(2026, 3, 2, 1, 0, tzinfo=UTC),
                seed=1,
                population_dir=city_mounts.resolve("/var/lib/kiemdich/sim"),
                out=city_mounts.resolve("/var/lib/kiemdich/devices"),
                db_url=None,  # sim-city runs with --no-register
                status_interval_s=1.0,
                dropout_per_hour=1.0,
                flagged_share=0.2,
                forged_share=0.05,
                expired_share=0.05,
                garbage_share=0.05,
            )
        )
        assert report.refused == 0 and report.planned > 50
        deadline = time.monotonic() + 60
        while service.stats()["received"] < report.planned and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.stats()["received"] >= report.planned, service.stats()
        time.sleep(1.5)  # the fleet flusher writes the last statuses
    finally:
        service.stop()  # flushes the time-series writer
        broker.stop()
    written = service.timeseries.stats()
    assert written.points_dropped == 0 and written.write_errors == 0, written
    force_flush(victoria_metrics)

    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored = int(conn.execute(select(func.count()).select_from(passages)).scalar_one())
        raised = int(conn.execute(select(func.count()).select_from(alerts)).scalar_one())
    engine.dispose()
    assert stored > 0 and raised > 0

    pattern = re.compile(DEVICE_ID_PATTERN)
    totals: dict[str, float] = {}
    for name, board in _dashboards().items():
        variables: dict[str, str] = {}
        for variable in board["templating"]["list"]:
            values = label_values(victoria_metrics, variable["definition"], variables)
            assert values, (name, variable["name"])
            # Ids need no regex escaping (Grafana would escape other characters).
            assert all(pattern.match(v) for v in values), values
            variables[variable["name"]] = "(" + "|".join(values) + ")"
        for panel, target in _panel_targets(board):
            promql = substitute(target["expr"], variables)
            series = query(victoria_metrics, promql)
            figures(
                f"{board['uid']} · {_english(panel['title'])} [{target['refId']}]: "
                f"{len(series)} series"
            )
            assert series, f"{name}: {panel['title']} returned nothing for {promql}"
            if "[$__range]" in target["expr"]:
                totals[_english(panel["title"])] = sum(float(s["value"][1]) for s in series)
    # The range totals on the traffic dashboard are exact: the SQL store's counts.
    assert totals["Passages in the selected range by checkpoint"] == stored
    assert totals["Alerts in the selected range"] == raised
    figures(f"dashboards vs SQL: {stored} passages, {raised} alerts — equal")
