"""systemd's notification protocol (``sd_notify``) with the standard library only.

Under a ``Type=notify`` unit systemd passes ``$NOTIFY_SOCKET``, an ``AF_UNIX``
datagram socket (a leading ``@`` means the abstract namespace). The agent
sends ``READY=1`` once started, ``STATUS=...`` lines that ``systemctl status``
shows, ``STOPPING=1`` on shutdown and, with ``WatchdogSec=``, ``WATCHDOG=1``
keep-alives: a unit that stops sending them is killed and restarted. Outside
systemd every call is a cheap no-op, so the agent needs no special mode.
(libsystemd's Python binding would add a C dependency to the Pi for a
twenty-line protocol.)
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

# STATUS lines longer than this are truncated by systemctl anyway.
MAX_STATUS_CHARS = 400


def _address(environ: Mapping[str, str]) -> str | None:
    address = environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    # Unset, or a vsock address (virtual machines): not where this agent runs.
    return None


def notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; False when not under systemd or on error.

    Never raises: a notification that cannot be delivered must not stop the gate.
    """
    address = _address(os.environ if environ is None else environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False
    return True


def status(text: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send a one-line ``STATUS=`` (newlines would start a new assignment, so they are folded)."""
    line = " ".join(text.split())[:MAX_STATUS_CHARS]
    return notify(f"STATUS={line}", environ=environ)


def watchdog_interval(*, environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds (``$WATCHDOG_USEC``), or None when no watchdog is armed.

    ``$WATCHDOG_PID``, when set, must be this process: a child that inherited the
    environment must not keep its parent's watchdog alive.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None
