"""The aggregator's second MQTT connection: fleet status in, retained documents out.

Kept apart from the ingest connection on purpose: device status goes to every
aggregator (a plain subscription, not shared) and needs no persistent session
(the statuses are retained, so a reconnect brings them all back), and the
deny-list and keyring are published retained from here without waiting behind
the scan stream's acknowledgements. Handlers run on paho's network thread and
must not block.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from aggregator.ingest.mqtt import MqttOptions, Session, connect_async, make_client

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    """A message handed to a handler."""

    topic: str
    payload: bytes
    received_at: datetime
    retained: bool  # replayed by the broker on subscribe, not sent just now


Handler = Callable[[Received], None]


class ControlLink:
    """Subscriptions with handlers, and publishing that tolerates a broker outage."""

    def __init__(self, options: MqttOptions, *, client_id: str) -> None:
        self.options = options
        self.client_id = client_id
        self._handlers: list[tuple[str, int, Handler]] = []
        self._on_connected: list[Callable[[], None]] = []
        self._connected = threading.Event()
        self._client = make_client(options, client_id=client_id)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Call ``handler`` for every message on ``topic_filter`` (renewed on each connect)."""
        self._handlers.append((topic_filter, qos, handler))

        def deliver(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            handler(Received(msg.topic, msg.payload, datetime.now(UTC), bool(msg.retain)))

        self._client.message_callback_add(topic_filter, deliver)
        if self.connected:
            self._client.subscribe(topic_filter, qos=qos)

    def on_connected(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` (on the network thread: keep it short) after every connect."""
        self._on_connected.append(hook)

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself."""
        connect_async(self._client, self.options, Session(persistent=False))

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    @property
    def connected(self) -> bool:
        """True while connected."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (True) or ``timeout`` seconds passed (False)."""
        return self._connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Publish; False when the client would not take it (not connected)."""
        if not self.connected:
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("MQTT từ chối kết nối / broker refused the connection: %s", reason)
            return
        for topic_filter, qos, _ in self._handlers:
            client.subscribe(topic_filter, qos=qos)
        self._connected.set()
        for hook in self._on_connected:
            hook()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._connected.clear()
        log.info("control link disconnected: %s", reason)
