"""Settings of pass issuing (the citizen's declaration form and the officers' paper entry).

Read from ``KIEMDICH_*`` environment variables: ``KIEMDICH_SIGNING_KEY_PATH``
(the issuer's private key file, ``kiemdich-signing-key/1``),
``KIEMDICH_PASS_VALIDITY_HOURS``, ``KIEMDICH_DECLARE_MAX_PER_IP`` and
``KIEMDICH_DECLARE_WINDOW_S``. The app uses ``app.state.issue_settings`` when
set (tests), else these, read once. Without a key path the forms answer
503 "issuing not configured" instead of failing later.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import Request
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.token import SigningKey


class IssueSettings(BaseSettings):
    """Where the issuing key is, how long a pass lasts, how often one address may file."""

    model_config = SettingsConfigDict(
        env_prefix="KIEMDICH_", extra="forbid", frozen=True, validate_default=True
    )

    signing_key_path: Path | None = Field(
        default=None, description="the issuer's private key file (never on a gate)"
    )
    pass_validity_hours: int = Field(default=72, ge=1, le=24 * 14)
    declare_max_per_ip: int = Field(
        default=20, ge=1, description="declarations one client address may file per window"
    )
    declare_window_s: int = Field(default=3600, ge=1)


@lru_cache(maxsize=8)
def _load_key(path: Path, mtime_ns: int) -> SigningKey:
    # Keyed by modification time too: a rotated key file is picked up without a restart.
    del mtime_ns
    return SigningKey.load(path)


def issue_settings(request: Request) -> IssueSettings:
    """The app's issue settings (``app.state.issue_settings``, else from the environment)."""
    state = request.app.state
    settings: IssueSettings | None = getattr(state, "issue_settings", None)
    if settings is None:
        settings = IssueSettings()
        state.issue_settings = settings
    return settings


def signing_key(settings: IssueSettings) -> SigningKey | None:
    """The issuing key, or None when no key path is configured."""
    if settings.signing_key_path is None:
        return None
    path = settings.signing_key_path
    return _load_key(path, path.stat().st_mtime_ns)
