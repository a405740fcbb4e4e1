"""Token verification for the ingest path, with the signature check cached per token text.

The same pass is shown at many gates over a day, and an Ed25519 check costs
tens of microseconds, so what does not depend on time (format, key, signature)
is cached per token text, bounded and cleared whenever the keyring changes.
The validity window is then judged for each passage at its own time. Nothing
about the registry (revocation, health status) is cached here: verdicts read
the registry for every batch.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from contract.token import Keyring, Reason, Verification, verify_token

DEFAULT_CACHE_SIZE = 50_000


@dataclass(frozen=True, slots=True)
class VerifierStats:
    """Cache effectiveness since start."""

    hits: int
    misses: int
    size: int


class TokenVerifier:
    """Verifies pass tokens against a keyring that can be swapped at run time."""

    def __init__(
        self, keyring: Keyring, *, cache_size: int = DEFAULT_CACHE_SIZE, leeway_s: int = 0
    ) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0: {cache_size}")
        self._keyring = keyring
        self._cache_size = cache_size
        self._leeway_s = leeway_s
        self._cache: OrderedDict[str, Verification] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def keyring(self) -> Keyring:
        """The keyring tokens are checked against."""
        return self._keyring

    def replace_keyring(self, keyring: Keyring) -> None:
        """Use a new keyring (key rotation); cached signature checks are dropped."""
        with self._lock:
            self._keyring = keyring
            self._cache.clear()

    def stats(self) -> VerifierStats:
        """Hits, misses and current size of the signature cache."""
        with self._lock:
            return VerifierStats(self._hits, self._misses, len(self._cache))

    def _signature(self, token: str) -> Verification:
        # Judged at the pass's own issue time, the window never fails, so the
        # result says only whether the code is well formed and authentic.
        with self._lock:
            cached = self._cache.get(token)
            if cached is not None:
                self._cache.move_to_end(token)
                self._hits += 1
                return cached
            keyring = self._keyring
        result = verify_token(token, keyring, now=None)
        if result.claims is not None and result.reason in (Reason.EXPIRED, Reason.NOT_YET_VALID):
            result = Verification(Reason.OK, result.claims)
        with self._lock:
            self._misses += 1
            if self._cache_size and keyring is self._keyring:
                self._cache[token] = result
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return result

    def verify(self, token: str, *, at: int) -> Verification:
        """The token's check at Unix time ``at``: format, key, signature, validity window.

        Revocation is not judged here (the registry's ``revoked_at`` is, per
        passage). Never raises on hostile input.
        """
        base = self._signature(token)
        claims = base.claims
        if base.reason is not Reason.OK or claims is None:
            return base
        if at + self._leeway_s < claims.issued_at:
            return Verification(Reason.NOT_YET_VALID, claims)
        if at - self._leeway_s >= claims.expires_at:
            return Verification(Reason.EXPIRED, claims)
        return base
