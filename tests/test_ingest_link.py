"""The MQTT link child's hand-offs stay bounded under a backlog: paho's thread keeps
writing while it waits for the parent, and QoS 1 publishes queue only so far."""

from __future__ import annotations

import socket
import threading
import time

from aggregator.ingest import link
from aggregator.ingest.link import Delivery, Frames, PahoScanClient
from aggregator.ingest.mqtt import MqttOptions, Session
from tests.fixtures.mqtt import free_port


def _delivery(mid: int) -> Delivery:
    return Delivery(mid, 1, "kd/v1/dev/gate-1/scan", b"{}", time.time(), 1)


def test_a_full_uplink_keeps_flushing_paho_until_the_parent_takes_messages() -> None:
    ours, parents = socket.socketpair()
    flushes: list[float] = []
    uplink = link._Uplink(Frames(ours), capacity=2, checker=None, flush=lambda: flushes.append(1))
    uplink.deliver([_delivery(1), _delivery(2)])  # full now

    third = threading.Thread(target=uplink.deliver, args=([_delivery(3)],), daemon=True)
    third.start()
    time.sleep(0.2)
    # Still waiting for room, and writing paho's queue meanwhile.
    assert third.is_alive()
    assert len(flushes) >= 5

    sender = threading.Thread(target=uplink.run, daemon=True)
    sender.start()
    parent = Frames(parents)
    received: list[int] = []
    while len(received) < 3:
        frame = parent.recv()
        assert frame is not None and frame[0] == "msgs"
        received.extend(m[0] for m in frame[1])
    third.join(timeout=5)
    assert not third.is_alive()
    assert received == [1, 2, 3]  # in arrival order, nothing dropped
    # Once there is room, paho's thread no longer waits nor flushes.
    before = len(flushes)
    time.sleep(0.05)
    assert len(flushes) == before
    uplink.close()
    parent.close()


def test_qos1_publishes_waiting_in_paho_are_bounded_and_the_rest_refused() -> None:
    # A broker that never answers: every QoS 1 publish stays queued in paho.
    client = PahoScanClient(
        MqttOptions(host="127.0.0.1", port=free_port()),
        Session(persistent=True, expiry_s=60),
        client_id="bounded",
        deliver=lambda _m: None,
        on_state=lambda _c: None,
    )
    notices = [("kd/v1/alerts/cp-1", b"{}", 1)] * (link.QUEUED_PUBLISHES + 250)
    # Not connected: all are counted as refused, but paho keeps the first ones
    # for the connection to come (as it would keep them for a slow broker)...
    assert client.publish(notices) == len(notices)
    # ... no more than the bound.
    assert len(client._client._out_messages) == link.QUEUED_PUBLISHES
