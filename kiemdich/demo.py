"""``kiemdich demo`` (``make demo``): the whole system on one machine, no Docker.

Prepares once under ``var/demo/`` (``--fresh`` starts over): a synthetic
registry, Hà Nội's camera checkpoints with per-device MQTT credentials, the
broker's password and ACL files, demo officer accounts, and synthetic gate
clips for the real edge agents. Then starts, in order, each as a child
process with its log in ``var/demo/logs/``:

1. VictoriaMetrics (time series),
2. mosquitto (auth + ACL),
3. the aggregator on SQLite, web screens on http://127.0.0.1:8000,
4. real edge agents, each reading a synthetic gate camera,
5. the city simulator for the other gates.

Ctrl-C stops them in reverse order. If one dies, the others are stopped and
its log's tail is printed.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEMO_DIR = Path("var/demo")
AGENTS = 3
CITIZENS = 50_000


@dataclass(frozen=True)
class Ports:
    """Where the demo listens (all on 127.0.0.1)."""

    http: int = 8000
    mqtt: int = 18830
    tsdb: int = 18428
    displays: int = 8081  # gate display of agent i: displays + i
    metrics: int = 9109  # agent metrics: metrics + i


@dataclass
class Child:
    """A supervised child process."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn it, output to its log file."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.process = subprocess.Popen(  # the argv is ours
            self.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,  # Ctrl-C reaches us; we stop children in order
        )

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def tail(self, lines: int = 30) -> str:
        """The end of its log."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Supervisor:
    """Starts children in order, stops them in reverse."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self, child: Child, *, ready: Callable[[], bool] | None = None, wait_s: float = 60
    ) -> None:
        """Start ``child`` and wait until ``ready()`` holds (or it dies)."""
        print(f"  ▶ {child.name}: {' '.join(child.argv[:3])} … (log: {child.log})", flush=True)
        child.start()
        self.children.append(child)
        if ready is None:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
            if ready():
                return
            time.sleep(0.25)
        raise RuntimeError(f"{child.name} not ready after {wait_s:.0f} s:\n{child.tail()}")

    def dead(self) -> Child | None:
        """The first child that exited on its own, if any."""
        return next((c for c in self.children if not c.alive()), None)

    def stop_all(self) -> None:
        """Stop every child, last started first."""
        for child in reversed(self.children):
            if child.alive():
                print(f"  ■ {child.name}", flush=True)
                child.stop()


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return 200 <= resp.status < 300
        except OSError:
            return False

    return check


def _port_open(port: int) -> Callable[[], bool]:
    import socket

    def check() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return check


def _kiemdich(*args: str) -> list[str]:
    return [sys.executable, "-m", "kiemdich.cli", *args]


def _secret(path: Path) -> str:
    """A random password kept in ``path`` (so a restarted demo keeps its accounts)."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(18)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


@dataclass(frozen=True)
class DemoPaths:
    """Everything the demo keeps under its directory."""

    root: Path

    @property
    def db_url(self) -> str:
        """The aggregator's embedded SQLite database."""
        return f"sqlite:///{(self.root / 'kiemdich.db').resolve()}"

    population = property(lambda self: self.root / "population")
    city = property(lambda self: self.root / "city")
    broker = property(lambda self: self.root / "broker")
    edge = property(lambda self: self.root / "edge")
    logs = property(lambda self: self.root / "logs")
    secrets = property(lambda self: self.root / "secrets")
    tsdb = property(lambda self: self.root / "victoria-metrics")


def _build_registry(paths: DemoPaths, citizens: int) -> None:
    from aggregator.db.migrate import upgrade
    from simulators.population import PopulationConfig, build_population

    if (paths.population / "tokens.csv").exists():
        print(f"  ✓ sổ dân cư / registry: {paths.population} (đã có / exists)")
        return
    print(f"  … sổ dân cư giả lập / synthetic registry: {citizens:,} công dân / citizens")
    upgrade(paths.db_url)
    build_population(
        PopulationConfig(citizens=citizens, db_url=paths.db_url, seed=2021, out=paths.population),
        progress=True,
    )


def _register_city(paths: DemoPaths) -> dict[str, str]:
    from simulators.city import CityConfig, prepare

    config = CityConfig(population_dir=paths.population, out=paths.city, db_url=paths.db_url)
    _layout, passwords = prepare(config)
    return passwords


def _agent_devices(passwords: dict[str, str], count: int) -> list[str]:
    # One inbound lane of each of the first gates: the busiest corridors.
    from simulators.city import build_layout

    layout = build_layout(45)
    chosen: list[str] = []
    seen_gates: set[str] = set()
    for device in layout.devices:
        if device.direction.value == "in" and device.checkpoint_id not in seen_gates:
            chosen.append(device.id)
            seen_gates.add(device.checkpoint_id)
        if len(chosen) == count:
            break
    missing = [d for d in chosen if d not in passwords]
    if missing:
        raise RuntimeError(f"no MQTT credentials for {missing}")
    return chosen


def _demo_tokens(paths: DemoPaths) -> tuple[list[str], list[str]]:
    """(clear tokens, F0 tokens) from the registry the population simulator wrote."""
    clear: list[str] = []
    f0: list[str] = []
    with (paths.population / "tokens.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["health_status"] == "F0":
                f0.append(row["token"])
            elif row["health_status"] == "none" and len(clear) < 2000:
                clear.append(row["token"])
    if not f0 or len(clear) < 100:
        raise RuntimeError("the demo registry has too few F0 or clear citizens")
    return clear, f0


def _write_agent(
    paths: DemoPaths, ports: Ports, index: int, device_id: str, tokens: list[str]
) -> Path:
    """Scenario and config of one real edge agent."""
    from simulators.city import build_layout
    from simulators.gatecam.scene import Camera, TrafficParams, build_scenario

    device = next(d for d in build_layout(45).devices if d.id == device_id)
    folder = paths.edge / device_id
    folder.mkdir(parents=True, exist_ok=True)
    params = TrafficParams(
        seconds=120.0,
        seed=100 + index,
        camera=Camera(resolution="720p", fps=15),
        cars_per_minute=12,
        speed_kmh=(10.0, 35.0),
        code_px=(140.0, 260.0),
        glare_share=0.1,
    )
    scenario = build_scenario(params, payloads=tokens)
    (folder / "scenario.json").write_text(scenario.model_dump_json())
    config = folder / "gate.yaml"
    config.write_text(
        f"""# Demo gate {device_id} (written by kiemdich demo)
device:
  id: {device_id}
  checkpoint_id: {device.checkpoint_id}
  lane: {device.lane}
  direction: in
camera:
  source: "synthetic:"
  loop: true
  realtime: true
  synthetic: {{scenario: {(folder / "scenario.json").resolve()}}}
verify:
  keyring: {(paths.population / "keyring.json").resolve()}
  denylist_cache: {(folder / "denylist.json").resolve()}
mqtt:
  host: 127.0.0.1
  port: {ports.mqtt}
  username: {device_id}
  password: ${{KIEMDICH_MQTT_PASSWORD}}
outbox: {{path: {(folder / "outbox.sqlite3").resolve()}}}
display: {{web: {{host: 127.0.0.1, port: {ports.displays + index}}}}}
metrics: {{host: 127.0.0.1, port: {ports.metrics + index}}}
status_interval_s: 5
"""
    )
    return config


def _demo_accounts(paths: DemoPaths) -> None:
    """One officer account per role (public demo passwords), listed for the banner."""
    from aggregator.auth.cli import ensure_demo
    from aggregator.db.engine import make_engine

    engine = make_engine(paths.db_url)
    try:
        with engine.begin() as conn:
            demos = ensure_demo(conn)
    finally:
        engine.dispose()
    lines = [f"{d.username:18} {d.password:20} {d.role.value}" for d in demos]
    target = paths.secrets / "demo-accounts.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")


def prepare(paths: DemoPaths, ports: Ports, *, citizens: int, agents: int) -> dict[str, object]:
    """Build everything the processes need; idempotent."""
    from aggregator.broker import write_broker_files

    paths.root.mkdir(parents=True, exist_ok=True)
    _build_registry(paths, citizens)
    passwords = _register_city(paths)
    print(f"  ✓ {len(passwords)} thiết bị / devices registered ({paths.city / 'credentials.json'})")
    aggregator_password = _secret(paths.secrets / "aggregator")
    conf = write_broker_files(
        paths.broker,
        port=ports.mqtt,
        devices=passwords.items(),
        services={"aggregator": aggregator_password},
    )
    _demo_accounts(paths)
    devices = _agent_devices(passwords, agents)
    clear, f0 = _demo_tokens(paths)
    configs = []
    for i, device_id in enumerate(devices):
        # The first agent's second car is an F0 case: a newcomer sees an alert within a minute.
        tokens = clear[i * 200 : (i + 1) * 200]
        if i == 0:
            tokens = [tokens[0], f0[0], *tokens[1:]]
        configs.append((device_id, _write_agent(paths, ports, i, device_id, tokens)))
    return {
        "broker_conf": conf,
        "aggregator_password": aggregator_password,
        "agents": configs,
        "passwords": passwords,
    }


def run(paths: DemoPaths, ports: Ports, *, citizens: int, agents: int, city_rate: float) -> int:
    """Prepare, start everything, wait for Ctrl-C, stop in reverse."""
    print("kiemdich demo — chuẩn bị / preparing", flush=True)
    plan = prepare(paths, ports, citizens=citizens, agents=agents)
    sup = Supervisor()
    stop = {"now": False}

    def on_signal(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    logs = paths.logs
    try:
        print("kiemdich demo — khởi động / starting", flush=True)
        vm = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
        sup.start(
            Child(
                "victoria-metrics",
                [
                    vm,
                    f"-httpListenAddr=127.0.0.1:{ports.tsdb}",
                    f"-storageDataPath={paths.tsdb}",
                    "-retentionPeriod=1y",
                    "-search.latencyOffset=5s",
                ],
                logs / "victoria-metrics.log",
            ),
            ready=_http_ok(f"http://127.0.0.1:{ports.tsdb}/health"),
        )
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        sup.start(
            Child("mosquitto", [mosquitto, "-c", str(plan["broker_conf"])], logs / "mosquitto.log"),
            ready=_port_open(ports.mqtt),
        )
        sup.start(
            Child(
                "aggregator",
                _kiemdich(
                    "aggregator",
                    "run",
                    "--environment",
                    "development",
                    "--db",
                    paths.db_url,
                    "--mqtt-port",
                    str(ports.mqtt),
                    "--mqtt-username",
                    "aggregator",
                    "--mqtt-password-env",
                    "KIEMDICH_DEMO_AGGREGATOR_PASSWORD",
                    "--client-id",
                    "aggregator-demo",
                    "--keyring",
                    str(paths.population / "keyring.json"),
                    "--http-host",
                    "127.0.0.1",
                    "--http-port",
                    str(ports.http),
                    "--tsdb-url",
                    f"http://127.0.0.1:{ports.tsdb}",
                ),
                logs / "aggregator.log",
                env={"KIEMDICH_DEMO_AGGREGATOR_PASSWORD": str(plan["aggregator_password"])},
            ),
            ready=_http_ok(f"http://127.0.0.1:{ports.http}/readyz"),
            wait_s=120,
        )
        passwords = plan["passwords"]
        assert isinstance(passwords, dict)
        agent_ids = []
        for device_id, config in plan["agents"]:  # type: ignore[attr-defined]
            agent_ids.append(device_id)
            sup.start(
                Child(
                    f"edge {device_id}",
                    _kiemdich("edge", "--config", str(config), "--log-level", "WARNING"),
                    logs / f"edge-{device_id}.log",
                    env={"KIEMDICH_MQTT_PASSWORD": passwords[device_id]},
                )
            )
        city_args = [
            "sim",
            "city",
            "--port",
            str(ports.mqtt),
            "--population-dir",
            str(paths.population),
            "--out",
            str(paths.city),
            "--db",
            paths.db_url,
            "--rate",
            str(city_rate),
            "--speedup",
            "60",
            "--duration",
            str(7 * 24 * 3600),
            "--quiet",
        ]
        for device_id in agent_ids:
            city_args += ["--exclude-device", device_id]
        sup.start(Child("city simulator", _kiemdich(*city_args), logs / "city.log"))
        _banner(paths, ports, plan)
        while not stop["now"]:
            dead = sup.dead()
            if dead is not None:
                print(f"\n{dead.name} đã dừng / stopped:\n{dead.tail()}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        print("\nkiemdich demo — dừng / stopping", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"lỗi / error: {exc}", file=sys.stderr)
        return 1
    finally:
        sup.stop_all()


def _banner(paths: DemoPaths, ports: Ports, plan: dict[str, object]) -> None:
    agents = plan["agents"]
    assert isinstance(agents, list)
    lines = [
        "",
        "══ kiemdich đang chạy / running ══",
        f"  Màn hình / screens:      http://127.0.0.1:{ports.http}/",
        f"  Chỉ số / metrics:        http://127.0.0.1:{ports.http}/metrics",
        f"  VictoriaMetrics:         http://127.0.0.1:{ports.tsdb}/vmui/",
        f"  MQTT broker:             127.0.0.1:{ports.mqtt} (auth + ACL)",
    ]
    for i, (device_id, _config) in enumerate(agents):
        lines.append(f"  Màn hình cổng / gate {device_id}: http://127.0.0.1:{ports.displays + i}/")
    accounts_file = paths.secrets / "demo-accounts.txt"
    accounts = accounts_file.read_text() if accounts_file.exists() else ""
    if accounts:
        lines += ["  Tài khoản thử / demo logins:", *("    " + a for a in accounts.splitlines())]
    lines += ["  Dừng / stop: Ctrl-C", ""]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    """``kiemdich demo`` entry point."""
    parser = argparse.ArgumentParser(prog="kiemdich demo", description=__doc__)
    _add_arguments(parser)
    return _run(parser.parse_args(argv))


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=DEMO_DIR, help="state directory (var/demo)")
    parser.add_argument("--fresh", action="store_true", help="delete the state directory first")
    parser.add_argument("--citizens", type=int, default=CITIZENS)
    parser.add_argument("--agents", type=int, default=AGENTS, help="real edge agents")
    parser.add_argument("--city-rate", type=float, default=5.0, help="city scans per second")
    defaults = Ports()
    for name in ("http", "mqtt", "tsdb", "displays", "metrics"):
        parser.add_argument(
            f"--{name}-port", type=int, default=getattr(defaults, name), dest=f"port_{name}"
        )


def _run(args: argparse.Namespace) -> int:
    if args.fresh and args.dir.exists():
        shutil.rmtree(args.dir)
    ports = Ports(
        http=args.port_http,
        mqtt=args.port_mqtt,
        tsdb=args.port_tsdb,
        displays=args.port_displays,
        metrics=args.port_metrics,
    )
    return run(
        DemoPaths(args.dir),
        ports,
        citizens=args.citizens,
        agents=args.agents,
        city_rate=args.city_rate,
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``kiemdich demo``."""
    demo = sub.add_parser("demo", help="run the whole system on this machine (make demo)")
    _add_arguments(demo)
    demo.set_defaults(func=_run)


if __name__ == "__main__":
    raise SystemExit(main())
