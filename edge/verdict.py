"""The gate's offline verdict: what to show before the aggregator answers.

Pure: a token verification plus the deny-list's word on the declaration in,
a colour and a reason out. The edge cannot see the registry, so a valid code
that is not denied shows green marked "offline check"; the aggregator's
verdict (with vaccination and health status) replaces it when it arrives.
"""

from __future__ import annotations

from contract.messages import Color, DenyReason, LocalVerdict, VerdictCode
from contract.token import Reason, Verification

_REFUSED: dict[Reason, VerdictCode] = {
    Reason.OVERSIZED: VerdictCode.MALFORMED,
    Reason.BAD_PREFIX: VerdictCode.MALFORMED,
    Reason.BAD_BASE45: VerdictCode.MALFORMED,
    Reason.BAD_CBOR: VerdictCode.MALFORMED,
    Reason.BAD_CLAIMS: VerdictCode.MALFORMED,
    Reason.UNKNOWN_KEY: VerdictCode.FORGED,
    Reason.BAD_SIGNATURE: VerdictCode.FORGED,
    Reason.EXPIRED: VerdictCode.EXPIRED,
    Reason.NOT_YET_VALID: VerdictCode.NOT_YET_VALID,
    Reason.REVOKED: VerdictCode.REVOKED,
}

_DENIED: dict[DenyReason, VerdictCode] = {
    DenyReason.REVOKED: VerdictCode.REVOKED,
    DenyReason.F0: VerdictCode.F0,
    DenyReason.F1: VerdictCode.F1,
    DenyReason.DECEASED: VerdictCode.DECEASED_IDENTITY,
}


def local_verdict(verification: Verification, denied: DenyReason | None) -> LocalVerdict:
    """Decide the gate colour offline from the token check and the deny-list."""
    if not verification.ok:
        code = _REFUSED[verification.reason]
        color = Color.RED if code is VerdictCode.REVOKED else Color.INVALID
        return LocalVerdict(color=color, code=code)
    if denied is not None:
        return LocalVerdict(color=Color.RED, code=_DENIED[denied])
    return LocalVerdict(color=Color.GREEN, code=VerdictCode.OFFLINE_VALID)
