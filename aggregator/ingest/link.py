"""The scan stream's MQTT connection: in this process, or in a child process of its own.

:class:`PahoScanClient` is the connection itself: a persistent MQTT 5
session on the shared subscription ``$share/aggregators/kd/v1/dev/+/scan``,
manual acknowledgements, verdicts and alert notices out. Each message is
handed on as a :class:`Delivery` carrying the connection *epoch* it arrived
on: a message is acknowledged only on the connection that delivered it
(after a reconnect the broker redelivers what was not acknowledged, with the
same packet ids, and acknowledging the old copy could acknowledge another
message that reused its id before it was committed).

Two ways to run it, same behaviour:

:class:`InProcessLink`
    paho's network thread in this process.
:class:`ProcessLink` (the default, ``mqtt_process``)
    ``python -m aggregator.ingest.link`` as a child process, talking to this
    one over a socket pair in length-prefixed pickle frames. paho spends tens
    of microseconds of pure Python per message (reading, acknowledging,
    publishing the verdict, reading its PUBACK): measured at a third of the
    aggregator's CPU, all of it under the GIL the verifier and the database
    threads need. In its own process it runs on the other core. The child
    receives and forwards messages in chunks, acknowledges exactly the
    (packet id, epoch) pairs it is sent, in that order, and publishes what it
    is given; it exits when its socket closes (the parent died, even by
    SIGKILL). When the child dies, the parent starts another with the same
    client id: the broker redelivers what was not acknowledged, and messages
    from the dead child's connection are never acknowledged (a new
    *generation* makes their epochs stale).

    Given the parent's :class:`~aggregator.ingest.tokens.TokenVerifier`, the
    child also checks each scan's token signature before forwarding it (the
    other costly step that needs no database; PyNaCl releases the GIL, so it
    overlaps paho's work). The parent uses such a check only for the very
    token it then parses, and only if it was made with its current keyring
    (replacements are forwarded, numbered); otherwise it checks again itself.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pickle
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from aggregator.ingest.mqtt import (
    MqttOptions,
    Session,
    connect_async,
    make_client,
    server_receive_maximum,
)
from aggregator.ingest.tokens import PackedCheck, TokenVerifier
from contract.messages import MAX_SCAN_BYTES
from contract.token import MAX_TOKEN_CHARS, Keyring, KeyringFile, keyring_json
from contract.topics import ALL_SCANS, shared

log = logging.getLogger(__name__)

# Verdicts in flight at once: paho's default, and mosquitto's default Receive
# Maximum (paho cannot change it once connected, so it is not taken from CONNACK).
OUTGOING_INFLIGHT = 20
# QoS 1 publishes (alert notices; verdicts too if verdict_qos=1) paho may hold
# at once, in flight or waiting for a slot. Under a backlog the broker's
# acknowledgements come back behind thousands of scans, 20 at a time, and an
# unbounded queue grew the MQTT child by ~20 MiB a minute (benchmarks/soak.py
# at 3,000 scans/s). Past the bound a notice is refused and counted: the
# screens' database poll still shows its alert.
QUEUED_PUBLISHES = 1000
# Messages the child forwards per frame at most.
_CHUNK = 256
# While paho's thread waits for room to hand messages on, it sends what it has
# queued this often (see _Uplink.deliver).
_FLUSH_EVERY_S = 0.005
_HEADER = struct.Struct("!I")
_RESTART_DELAY_S = 1.0


class Delivery(NamedTuple):
    """One scan message as received (a tuple: one is made per message on paho's thread)."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    received: float  # time.time()
    epoch: int
    # (token, keyring generation, signature check) when the link checked it.
    checked: tuple[str, int, PackedCheck] | None = None


Deliver = Callable[[Sequence[Delivery]], None]
OnState = Callable[[bool], None]
OnCounts = Callable[[int, int], None]  # stale acknowledgements skipped, publishes refused


class PahoScanClient:
    """The scan stream's paho client (MQTT 5, persistent session, manual acknowledgements)."""

    def __init__(
        self,
        options: MqttOptions,
        session: Session,
        *,
        client_id: str,
        deliver: Deliver,
        on_state: OnState,
    ) -> None:
        self.options = options
        self.session = session
        self.client_id = client_id
        self._deliver = deliver
        self._on_state = on_state
        self._epoch = 0
        self._epoch_lock = threading.Lock()
        self._connects = 0
        self._stopping = False
        self._client = make_client(options, client_id=client_id, manual_ack=True)
        self._client.max_inflight_messages_set(OUTGOING_INFLIGHT)
        self._client.max_queued_messages_set(QUEUED_PUBLISHES)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connect in paho's own thread (it reconnects by itself from then on)."""
        connect_async(self._client, self.options, self.session)

    def stop(self) -> None:
        """Disconnect; what was not acknowledged stays in our session on the broker."""
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, acks: Sequence[tuple[int, int, int]]) -> int:
        """Acknowledge ``(mid, qos, epoch)`` in order; returns how many were skipped
        (received on an earlier connection, or refused by paho: redelivered later)."""
        skipped = 0
        with self._epoch_lock:
            for mid, qos, epoch in acks:
                stale = epoch != self._epoch
                if stale or self._client.ack(mid, qos) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    skipped += 1
        return skipped

    def flush(self) -> None:
        """Write what paho has queued for the broker (verdicts, acknowledgements) now.

        Only on paho's network thread, from inside a callback that has to wait:
        that thread is the one that writes the socket, and while it waits
        nothing else would.
        """
        if self._client.want_write():
            self._client.loop_write()

    def publish(self, messages: Sequence[tuple[str, bytes, int]]) -> int:
        """Publish ``(topic, payload, qos)``; returns how many paho refused (not connected,
        or :data:`QUEUED_PUBLISHES` QoS 1 messages already waiting)."""
        refused = 0
        for topic, payload, qos in messages:
            if self._client.publish(topic, payload, qos=qos).rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                refused += 1
        return refused

    # --- paho callbacks (network thread) ----------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("MQTT từ chối kết nối / broker refused the connection: %s", reason)
            return
        self._connects += 1
        if self._connects > 1 and not flags.session_present:
            log.error(
                "broker lost our session: messages it held for us may be gone "
                "(persistence off or session expired)"
            )
        if server_receive_maximum(properties) < OUTGOING_INFLIGHT:
            log.warning(
                "broker's Receive Maximum %d is below our %d verdicts in flight",
                server_receive_maximum(properties),
                OUTGOING_INFLIGHT,
            )
        # Connected counts from the SUBACK: scans published before the broker
        # has our subscription would not reach us.
        client.subscribe(shared(ALL_SCANS), qos=1)
        log.info(
            "ingest connected to %s:%d as %s (session present: %s)",
            self.options.host,
            self.options.port,
            self.client_id,
            flags.session_present,
        )

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            log.error(
                "MQTT từ chối đăng ký / broker refused the scan subscription %s: %s",
                shared(ALL_SCANS),
                refused[0],
            )
            return
        self._on_state(True)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        # paho calls this before it reconnects: what was received so far can no
        # longer be acknowledged.
        with self._epoch_lock:
            self._epoch += 1
        self._on_state(False)
        if not self._stopping:
            log.warning("ingest disconnected from the broker: %s", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<topic không phải UTF-8 / invalid UTF-8 topic>"
        self._deliver((Delivery(msg.mid, msg.qos, topic, msg.payload, now, self._epoch),))


class InProcessLink:
    """The scan connection with paho's network thread in this process."""

    def __init__(
        self,
        options: MqttOptions,
        session: Session,
        *,
        client_id: str,
        deliver: Deliver,
        on_state: OnState,
        on_counts: OnCounts,
    ) -> None:
        self._paho = PahoScanClient(
            options, session, client_id=client_id, deliver=deliver, on_state=on_state
        )
        self._on_counts = on_counts

    def start(self) -> None:
        """Connect in the background."""
        self._paho.start()

    def stop(self) -> None:
        """Disconnect."""
        self._paho.stop()

    def ack(self, messages: Sequence[Delivery]) -> None:
        """Acknowledge, in this order, on the connection each arrived on."""
        skipped = self._paho.ack([(m.mid, m.qos, m.epoch) for m in messages])
        if skipped:
            self._on_counts(skipped, 0)

    def publish(self, messages: Sequence[tuple[str, bytes, int]]) -> None:
        """Publish ``(topic, payload, qos)`` messages."""
        refused = self._paho.publish(messages)
        if refused:
            self._on_counts(0, refused)


# --- frames over a socket ----------------------------------------------------------


class Frames:
    """Length-prefixed pickle frames over a stream socket (between trusted processes)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = sock.makefile("rb")
        self._send_lock = threading.Lock()

    def send(self, frame: tuple[Any, ...]) -> None:
        """Send one frame (thread-safe); raises OSError when the other side is gone."""
        body = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.sock.sendall(_HEADER.pack(len(body)) + body)

    def recv(self) -> tuple[Any, ...] | None:
        """The next frame, or None when the other side closed the socket."""
        header = self._reader.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack(header)
        body = self._reader.read(size)
        if len(body) < size:
            return None
        frame: tuple[Any, ...] = pickle.loads(body)
        return frame

    def close(self) -> None:
        """Close both directions."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._reader.close()
        self.sock.close()


# --- the parent's side ------------------------------------------------------------------


class ProcessLink:
    """The scan connection in a child process (``python -m aggregator.ingest.link``)."""

    def __init__(
        self,
        options: MqttOptions,
        session: Session,
        *,
        client_id: str,
        deliver: Deliver,
        on_state: OnState,
        on_counts: OnCounts,
        verifier: TokenVerifier | None = None,
        log_level: int | None = None,
    ) -> None:
        self.options = options
        self.session = session
        self.client_id = client_id
        self._deliver = deliver
        self._on_state = on_state
        self._on_counts = on_counts
        self._verifier = verifier
        if verifier is not None:
            verifier.on_replace(self._keyring_replaced)
        self._log_level = log_level if log_level is not None else logging.getLogger().level
        self._lock = threading.Lock()
        self._generation = 0
        self._frames: Frames | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def child_pid(self) -> int | None:
        """The child process's id while it runs."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def start(self) -> None:
        """Start the child (it connects in the background)."""
        self._stopping.clear()
        self._spawn()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "aggregator.ingest.link", "--fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # a parent may read its own stdout (logs go to stderr)
            )
        finally:
            theirs.close()
        frames = Frames(ours)
        # The configuration (a password among it) goes over the socket, never argv or env.
        verifier = self._verifier
        checks = None
        if verifier is not None:
            checks = (
                keyring_json(verifier.keyring.entries()),
                verifier.generation,
                verifier.cache_size,
            )
        frames.send(("config", self.options, self.session, self.client_id, self._log_level, checks))
        with self._lock:
            self._generation += 1
            self._frames = frames
            self._child = child
            generation = self._generation
        if verifier is not None and checks is not None and verifier.generation != checks[1]:
            # Replaced while the child started: it would otherwise check with the old one.
            self._keyring_replaced(verifier.keyring, verifier.generation)
        self._reader = threading.Thread(
            target=self._read, args=(frames, child, generation), name="ingest-link", daemon=True
        )
        self._reader.start()

    def stop(self) -> None:
        """Ask the child to disconnect and exit; kill it if it does not."""
        self._stopping.set()
        with self._lock:
            frames, child = self._frames, self._child
        if frames is not None:
            with contextlib.suppress(OSError):
                frames.send(("stop",))
        if child is not None:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=15)
        if frames is not None:
            frames.close()

    def ack(self, messages: Sequence[Delivery]) -> None:
        """Acknowledge, in this order, on the connection each arrived on."""
        with self._lock:
            frames, generation = self._frames, self._generation
        acks = []
        stale = 0
        for m in messages:
            # epoch = generation << 32 | the child's own connection epoch
            if m.epoch >> 32 == generation:
                acks.append((m.mid, m.qos, m.epoch & 0xFFFFFFFF))
            else:
                stale += 1
        if stale:
            self._on_counts(stale, 0)
        if acks and frames is not None:
            try:
                frames.send(("ack", acks))
            except OSError:
                # The child is gone: these are redelivered to the next one.
                self._on_counts(len(acks), 0)

    def _keyring_replaced(self, keyring: Keyring, generation: int) -> None:
        with self._lock:
            frames = self._frames
        if frames is not None:
            # Lost with a dying child: the next one gets the keyring with its configuration.
            with contextlib.suppress(OSError):
                frames.send(("keyring", keyring_json(keyring.entries()), generation))

    def publish(self, messages: Sequence[tuple[str, bytes, int]]) -> None:
        """Publish ``(topic, payload, qos)`` messages through the child."""
        with self._lock:
            frames = self._frames
        if frames is None:
            return
        try:
            frames.send(("publish", list(messages)))
        except OSError:
            self._on_counts(0, len(messages))

    def _read(self, frames: Frames, child: subprocess.Popen[bytes], generation: int) -> None:
        high = generation << 32
        try:
            while True:
                frame = frames.recv()
                if frame is None:
                    break
                kind = frame[0]
                if kind == "msgs":
                    self._deliver(
                        [
                            Delivery(mid, qos, topic, payload, received, high | epoch, checked)
                            for mid, qos, topic, payload, received, epoch, checked in frame[1]
                        ]
                    )
                elif kind == "state":
                    self._on_state(bool(frame[1]))
                elif kind == "counts":
                    self._on_counts(int(frame[1]), int(frame[2]))
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            log.warning("link to the MQTT child broken: %s", exc)
        self._on_state(False)
        if self._stopping.is_set():
            return
        code = child.wait()
        log.error(
            "tiến trình MQTT đã dừng / the MQTT child process exited (%s); starting another",
            code,
        )
        frames.close()
        while not self._stopping.wait(_RESTART_DELAY_S):
            try:
                self._spawn()
                return
            except OSError as exc:
                log.error("could not start the MQTT child process, retrying: %s", exc)


# --- the child's side --------------------------------------------------------------------


class _Uplink:
    """Everything the child sends its parent, from one thread of its own.

    Messages are bounded: when the parent does not take them (its inbox is
    full), paho's thread waits here, as it would on the inbox in-process.
    While it waits it calls ``flush`` every few milliseconds: paho's thread is
    the only one that writes the socket, so without it the verdicts and
    acknowledgements the parent hands over would pile up in paho (they did,
    by thousands, under a backlog) and the broker would wait for them.
    Control frames (state, counts) are not bounded, and go first: the thread
    reading the parent's acknowledgements must never wait on the parent,
    which may be waiting for room in its inbox.
    """

    def __init__(
        self,
        frames: Frames,
        capacity: int,
        checker: _Checker | None,
        flush: Callable[[], None] | None = None,
    ) -> None:
        self._frames = frames
        self._capacity = capacity
        self._checker = checker
        self._flush = flush
        self._items: list[tuple[Any, ...]] = []
        self._control: list[tuple[Any, ...]] = []
        self._cond = threading.Condition()
        self._closed = False

    def deliver(self, messages: Sequence[Delivery]) -> None:
        while True:
            with self._cond:
                if len(self._items) < self._capacity or self._closed:
                    self._items.extend(tuple(m) for m in messages)
                    self._cond.notify_all()
                    return
                self._cond.wait(_FLUSH_EVERY_S if self._flush is not None else None)
            if self._flush is not None:
                self._flush()

    def control(self, frame: tuple[Any, ...]) -> None:
        with self._cond:
            self._control.append(frame)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._control and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                if self._control:
                    frame, self._control = self._control[0], self._control[1:]
                else:
                    chunk, self._items = self._items[:_CHUNK], self._items[_CHUNK:]
                    self._cond.notify_all()
                    frame = ("msgs", chunk)
            if frame[0] == "msgs" and self._checker is not None:
                # Outside the lock: paho's thread keeps delivering meanwhile.
                check = self._checker.check
                frame = ("msgs", [(*m[:6], check(m[3])) for m in frame[1]])
            try:
                self._frames.send(frame)
            except OSError:
                os._exit(0)  # the parent is gone; our session stays on the broker


_TOKEN = re.compile(rb'"token"\s*:\s*"([^"\\]{0,%d})"' % MAX_TOKEN_CHARS)


class _Checker:
    """The child's token signature checks, tagged with the parent's keyring generation."""

    def __init__(self, keyring_text: str, generation: int, cache_size: int) -> None:
        self._verifier = TokenVerifier(Keyring(), cache_size=cache_size)
        self._generation = generation
        self.replace(keyring_text, generation)

    def replace(self, keyring_text: str, generation: int) -> None:
        keyring = Keyring.from_keys(KeyringFile.model_validate_json(keyring_text).keys)
        self._verifier.replace_keyring(keyring)
        self._generation = generation

    def check(self, payload: bytes) -> tuple[str, int, PackedCheck] | None:
        """The signature check of the payload's token; None if there is no token to check
        (the parent then refuses or checks the message itself)."""
        if len(payload) > MAX_SCAN_BYTES:
            return None
        # Found, not parsed: the parent parses the payload anyway, and uses
        # this check only if its parse finds this very token. A token is
        # base45 text (no quote, no backslash) after "KD1:"; anything else
        # (escapes, hostile bytes) is left for the parent to check.
        found = _TOKEN.search(payload)
        if found is None:
            return None
        token = found.group(1).decode("ascii", errors="replace")
        # The keyring is replaced before its generation is: a check tagged with
        # a generation was made with that keyring or a later one; one that
        # straddles a replacement is dropped (the parent checks it again).
        generation = self._generation
        result = self._verifier.packed_signature(token)
        if self._generation != generation:
            return None
        return token, generation, result


def child_main(argv: list[str] | None = None) -> int:
    """The child process: one scan connection driven by its parent over a socket."""
    parser = argparse.ArgumentParser(description="kiemdich aggregator: scan stream MQTT link")
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args(argv)
    # Ctrl-C or a SIGTERM to the process group is the parent's to handle: it
    # stops us over the socket once its threads are done (and if it dies, the
    # socket closes and we exit).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    frames = Frames(socket.socket(fileno=args.fd))
    config = frames.recv()
    if config is None or config[0] != "config":
        return 2
    _, options, session, client_id, level, checks = config
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s[link]: %(message)s")
    checker = None if checks is None else _Checker(*checks)
    # Holds at most what the broker lets us have unacknowledged (and then some).
    paho: PahoScanClient | None = None

    def flush() -> None:
        if paho is not None:
            paho.flush()

    uplink = _Uplink(
        frames,
        capacity=2 * (session.receive_maximum or 2000) + 100,
        checker=checker,
        flush=flush,
    )
    paho = PahoScanClient(
        options,
        session,
        client_id=client_id,
        deliver=uplink.deliver,
        on_state=lambda connected: uplink.control(("state", connected)),
    )
    sender = threading.Thread(target=uplink.run, name="uplink", daemon=True)
    sender.start()
    paho.start()
    try:
        while True:
            frame = frames.recv()
            if frame is None or frame[0] == "stop":
                break
            if frame[0] == "ack":
                skipped = paho.ack(frame[1])
                if skipped:
                    uplink.control(("counts", skipped, 0))
            elif frame[0] == "publish":
                refused = paho.publish(frame[1])
                if refused:
                    uplink.control(("counts", 0, refused))
            elif frame[0] == "keyring" and checker is not None:
                checker.replace(frame[1], frame[2])
    except (OSError, EOFError, pickle.UnpicklingError):
        pass
    uplink.close()
    paho.stop()
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
