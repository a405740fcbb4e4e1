"""Edge outbox and MQTT link throughput, each beside a baseline measured in the same run.

1. enqueue + ack (batches of 20, as the publisher acks) with ``synchronous=FULL``
   (durable on power loss, the default) against ``NORMAL`` (durable only on a
   process crash).
2. Draining a backlog through :class:`edge.mqtt_link.MqttLink` to a local
   mosquitto until every event is PUBACKed and removed from the outbox,
   against a bare paho client publishing the same payloads at QoS 1 with the
   same in-flight window and no outbox.
3. The same link fed live (enqueue and publish at once), the gate's real pattern.

Run: ``.venv/bin/python -m benchmarks.bench_outbox [--events N]``.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract.ids import new_event_id
from contract.messages import Direction, ScanEvent, encode
from edge.mqtt_link import MqttConfig, MqttLink
from edge.outbox import Outbox, OutboxConfig

DEVICE = "bench-01"
WINDOW = 20
ACK_BATCH = 20


def _scan(seq: int) -> ScanEvent:
    return ScanEvent(
        event_id=new_event_id(),
        device_id=DEVICE,
        checkpoint_id="cp-bench",
        lane=0,
        direction=Direction.IN,
        seq=seq,
        seen_at=datetime.now(UTC),
        token="KD1:" + "Q" * 140,
        decoder="zxing",
        quality=0.9,
    )


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def bench_enqueue_ack(workdir: Path, events: int, synchronous: Literal["FULL", "NORMAL"]) -> float:
    """Events per second through enqueue (one commit each) and batched ack."""
    path = workdir / f"enqueue-{synchronous}.sqlite3"
    box = Outbox(OutboxConfig(path=path, synchronous=synchronous))
    try:
        start = time.perf_counter()
        batch: list[int] = []
        for _ in range(events):
            batch.append(box.enqueue(_scan))
            if len(batch) == ACK_BATCH:
                box.ack_many(batch)
                batch.clear()
        box.ack_many(batch)
        elapsed = time.perf_counter() - start
    finally:
        box.close()
    return _rate(events, elapsed)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mosquitto(workdir: Path) -> Iterator[int]:
    """A private mosquitto on a free port (no persistence); yields the port."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest none\n")
    proc = subprocess.Popen([exe, "-c", str(conf)])
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait(predicate: Callable[[], bool], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish")
        time.sleep(0.002)


def bench_bare_paho(port: int, payloads: list[bytes]) -> float:
    """Messages per second: paho alone, QoS 1, same window, until every PUBACK."""
    done = threading.Event()
    acked = 0
    connected = threading.Event()

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked == len(payloads):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(WINDOW)
    client.on_publish = on_publish
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("bare paho client did not connect")
        start = time.perf_counter()
        for payload in payloads:
            client.publish(f"kd/v1/dev/{DEVICE}/scan", payload, qos=1)
        if not done.wait(600):
            raise TimeoutError("bare paho: PUBACKs missing")
        elapsed = time.perf_counter() - start
    finally:
        client.disconnect()
        client.loop_stop()
    return _rate(len(payloads), elapsed)


def _link(port: int, box: Outbox) -> MqttLink:
    return MqttLink(
        MqttConfig(host="127.0.0.1", port=port, max_inflight=WINDOW),
        device_id=DEVICE,
        checkpoint_id="cp-bench",
        outbox=box,
    )


def bench_link_drain(port: int, workdir: Path, events: int) -> float:
    """Events per second: a backlog drained through the link until the outbox is empty."""
    box = Outbox(OutboxConfig(path=workdir / "drain.sqlite3"))
    for _ in range(events):
        box.enqueue(_scan)
    link = _link(port, box)
    try:
        start = time.perf_counter()
        link.start()
        _wait(lambda: box.depth() == 0)
        elapsed = time.perf_counter() - start
    finally:
        link.stop(timeout_s=1.0)
        box.close()
    return _rate(events, elapsed)


def bench_link_live(port: int, workdir: Path, events: int) -> float:
    """Events per second: enqueue (FULL) while the link publishes, until all are acked."""
    box = Outbox(OutboxConfig(path=workdir / "live.sqlite3"))
    link = _link(port, box)
    try:
        link.start()
        _wait(lambda: link.connected, timeout=10)
        start = time.perf_counter()
        for _ in range(events):
            box.enqueue(_scan)
        _wait(lambda: box.depth() == 0)
        elapsed = time.perf_counter() - start
    finally:
        link.stop(timeout_s=1.0)
        box.close()
    return _rate(events, elapsed)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print our figures beside their baselines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="events per measurement")
    args = parser.parse_args(argv)
    n = args.events
    with tempfile.TemporaryDirectory(prefix="kd-bench-outbox-") as tmp:
        workdir = Path(tmp)
        full = bench_enqueue_ack(workdir, n, "FULL")
        normal = bench_enqueue_ack(workdir, n, "NORMAL")
        print(f"outbox enqueue+ack, {n} events (ack batches of {ACK_BATCH}):")
        print(f"  synchronous=FULL   {full:10.0f} events/s  (ours, durable on power loss)")
        print(f"  synchronous=NORMAL {normal:10.0f} events/s  (baseline)")
        print(f"  ratio FULL/NORMAL  {full / normal:10.3f}")

        payloads = [encode(_scan(i)) for i in range(n)]
        with mosquitto(workdir) as port:
            bare = bench_bare_paho(port, payloads)
            drain = bench_link_drain(port, workdir, n)
            live = bench_link_live(port, workdir, n)
        print(f"publish to local mosquitto, QoS 1, window {WINDOW}, {n} events:")
        print(f"  link draining a backlog  {drain:10.0f} events/s  (ours)")
        print(f"  link fed live (FULL)     {live:10.0f} events/s  (ours, enqueue included)")
        print(f"  bare paho, no outbox     {bare:10.0f} events/s  (baseline)")
        print(f"  ratio drain/bare         {drain / bare:10.3f}")
        print(f"  ratio live/bare          {live / bare:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
