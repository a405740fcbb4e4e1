"""The public keyring: loaded from its file, watched for rotation, published retained.

Gates verify pass tokens offline with the keyring retained on
``kd/v1/keyring``; the aggregator verifies with the same file. When the file
changes (a key added for rotation, an old one given ``not_after``), the new
keyring replaces the old in the verifier and on the broker. A file that no
longer parses is logged and ignored: the keyring in use stays.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from aggregator.ingest.tokens import TokenVerifier
from contract.token import Keyring, keyring_json
from contract.topics import KEYRING_TOPIC

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], bool]


def load_keyring(path: Path) -> Keyring:
    """Read the keyring file; ``ValueError`` (with the path and reason) if unusable."""
    try:
        ring = Keyring.load(path)
    except OSError as exc:
        raise ValueError(f"Không đọc được keyring / cannot read keyring {path}: {exc}") from exc
    if not len(ring):
        raise ValueError(f"Keyring trống / keyring {path} holds no key")
    return ring


def keyring_payload(ring: Keyring) -> bytes:
    """The retained document gates read (``contract.token.KeyringFile`` JSON)."""
    return keyring_json(ring.entries()).encode()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None


class KeyringWatcher:
    """Keeps the verifier and the broker on the keyring file's current content."""

    def __init__(self, path: Path, verifier: TokenVerifier, publish: Publish) -> None:
        self.path = path
        self.verifier = verifier
        self._publish = publish
        self._mtime = _mtime(path)
        self._lock = threading.Lock()
        self._published = False

    def publish(self) -> bool:
        """Publish the keyring in use (retained); False when the broker is unreachable."""
        with self._lock:
            ok = self._publish(KEYRING_TOPIC, keyring_payload(self.verifier.keyring))
            self._published = ok
            return ok

    def request_publish(self) -> None:
        """Have the next :meth:`tick` publish again (after a reconnect)."""
        self._published = False

    def tick(self) -> None:
        """Reload the file if it changed; publish if the broker has not got it yet."""
        mtime = _mtime(self.path)
        if mtime is not None and mtime != self._mtime:
            try:
                ring = load_keyring(self.path)
            except ValueError as exc:
                log.error("keyring file changed but is unusable, keeping the old one: %s", exc)
            else:
                self.verifier.replace_keyring(ring)
                self._published = False
                log.info(
                    "keyring reloaded from %s: key ids %s",
                    self.path,
                    [e.kid for e in ring.entries()],
                )
            self._mtime = mtime
        if not self._published:
            self.publish()
