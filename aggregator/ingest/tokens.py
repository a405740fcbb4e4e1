"""Token verification for the ingest path, with the signature check cached per token text.

The same pass is shown at many gates over a day, and an Ed25519 check costs
tens of microseconds, so what does not depend on time (format, key, signature)
is cached per token text, bounded and cleared whenever the keyring changes.
The validity window is then judged for each passage at its own time. Nothing
about the registry (revocation, health status) is cached here: verdicts read
the registry for every batch.

The two halves are public (:meth:`TokenVerifier.signature`,
:meth:`TokenVerifier.judge`) so the signature can be checked in another
process (the MQTT link child, :mod:`aggregator.ingest.link`) and the window
here; :attr:`TokenVerifier.generation` counts keyring replacements, so a
check made against an older keyring is recognised and done again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from contract.token import Keyring, PassClaims, Reason, Verification, verify_token

DEFAULT_CACHE_SIZE = 50_000


# A signature check as plain values: to cache (see TokenVerifier.packed_signature)
# and to cross a process boundary (pickling a Verification would pickle its
# pydantic claims, slowly).
PackedCheck = tuple[str, str, tuple[int, int, int, int] | None]


def pack_check(check: Verification) -> PackedCheck:
    """``check`` as plain values (reason, detail, claims)."""
    claims = check.claims
    packed = (
        None
        if claims is None
        else (claims.kid, claims.declaration_id, claims.issued_at, claims.expires_at)
    )
    return check.reason.value, check.detail, packed


def unpack_check(packed: PackedCheck) -> Verification:
    """The :class:`Verification` :func:`pack_check` was given (our cache, or our own child)."""
    reason, detail, values = packed
    claims = None
    if values is not None:
        kid, declaration_id, issued_at, expires_at = values
        # From a PassClaims validated when it was packed: not validated again.
        claims = PassClaims.model_construct(
            kid=kid, declaration_id=declaration_id, issued_at=issued_at, expires_at=expires_at
        )
    return Verification(Reason(reason), claims, detail)


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
        self._cache: OrderedDict[str, PackedCheck] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._generation = 0
        self._watchers: list[Callable[[Keyring, int], None]] = []

    @property
    def keyring(self) -> Keyring:
        """The keyring tokens are checked against."""
        return self._keyring

    @property
    def generation(self) -> int:
        """How many times the keyring was replaced (0 for the first one)."""
        return self._generation

    @property
    def cache_size(self) -> int:
        """How many signature checks are kept at most."""
        return self._cache_size

    def on_replace(self, watcher: Callable[[Keyring, int], None]) -> None:
        """Call ``watcher(keyring, generation)`` after every :meth:`replace_keyring`."""
        self._watchers.append(watcher)

    def replace_keyring(self, keyring: Keyring) -> None:
        """Use a new keyring (key rotation); cached signature checks are dropped."""
        with self._lock:
            self._keyring = keyring
            self._cache.clear()
            self._generation += 1
            generation = self._generation
        for watcher in self._watchers:
            watcher(keyring, generation)

    def stats(self) -> VerifierStats:
        """Hits, misses and current size of the signature cache."""
        with self._lock:
            return VerifierStats(self._hits, self._misses, len(self._cache))

    def signature(self, token: str) -> Verification:
        """What does not depend on time: format, key and signature (cached per token).

        The reason is ``ok`` for an authentic pass whatever its dates;
        :meth:`judge` applies the window. Never raises on hostile input.
        """
        return unpack_check(self.packed_signature(token))

    def packed_signature(self, token: str) -> PackedCheck:
        """:meth:`signature` as plain values (see :func:`pack_check`), as cached."""
        # Cached as plain tuples, not Verification objects with pydantic claims:
        # a third of the memory, and tuples of numbers and strings are not
        # tracked by the garbage collector (50,000 cached checks made every
        # full collection a pause of tens of milliseconds).
        with self._lock:
            cached = self._cache.get(token)
            if cached is not None:
                self._cache.move_to_end(token)
                self._hits += 1
                return cached
            keyring = self._keyring
        # Judged at the pass's own issue time, the window never fails, so the
        # result says only whether the code is well formed and authentic.
        result = verify_token(token, keyring, now=None)
        if result.claims is not None and result.reason in (Reason.EXPIRED, Reason.NOT_YET_VALID):
            result = Verification(Reason.OK, result.claims)
        packed = pack_check(result)
        with self._lock:
            self._misses += 1
            if self._cache_size and keyring is self._keyring:
                self._cache[token] = packed
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return packed

    def verify(self, token: str, *, at: int) -> Verification:
        """The token's check at Unix time ``at``: format, key, signature, validity window.

        Revocation is not judged here (the registry's ``revoked_at`` is, per
        passage). Never raises on hostile input.
        """
        return self.judge(self.signature(token), at=at)

    def judge(self, base: Verification, *, at: int) -> Verification:
        """:meth:`signature`'s result with the validity window judged at Unix time ``at``."""
        claims = base.claims
        if base.reason is not Reason.OK or claims is None:
            return base
        if at + self._leeway_s < claims.issued_at:
            return Verification(Reason.NOT_YET_VALID, claims)
        if at - self._leeway_s >= claims.expires_at:
            return Verification(Reason.EXPIRED, claims)
        return base
