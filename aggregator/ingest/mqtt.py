"""Building the aggregator's paho clients (MQTT 5) the same way everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """Where the broker is and how to log in."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30


@dataclass(frozen=True, slots=True)
class Session:
    """How a client's session lives on the broker."""

    persistent: bool
    expiry_s: int = 0
    receive_maximum: int | None = None


def make_client(options: MqttOptions, *, client_id: str, manual_ack: bool = False) -> mqtt.Client:
    """A paho MQTT 5 client with credentials, TLS and reconnect back-off set (not connected)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    if options.ca_file is not None:
        client.tls_set(ca_certs=str(options.ca_file))
    client.reconnect_delay_set(options.reconnect_min_s, options.reconnect_max_s)
    return client


def connect_async(client: mqtt.Client, options: MqttOptions, session: Session) -> None:
    """Start connecting in paho's own thread; paho reconnects by itself after that.

    A persistent session (``clean_start=False`` with a session expiry) keeps
    the broker holding our subscription and every unacknowledged message
    while we are away, and redelivering them when we come back with the same
    client id.
    """
    properties = Properties(PacketTypes.CONNECT)
    if session.persistent:
        properties.SessionExpiryInterval = session.expiry_s
    if session.receive_maximum is not None:
        properties.ReceiveMaximum = session.receive_maximum
    client.connect_async(
        options.host,
        options.port,
        keepalive=options.keepalive_s,
        clean_start=not session.persistent,
        properties=properties,
    )
    client.loop_start()


MQTT5_DEFAULT_RECEIVE_MAXIMUM = 65_535


def server_receive_maximum(properties: Properties | None) -> int:
    """How many QoS 1 publishes the broker lets us have unacknowledged (CONNACK property;
    MQTT 5 says 65,535 when absent)."""
    value = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
    return int(value) if value else MQTT5_DEFAULT_RECEIVE_MAXIMUM
