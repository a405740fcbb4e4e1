"""Settings of the officers' screens: sessions, login limits, broker provisioning.

Read from ``KIEMDICH_WEB_*`` environment variables (e.g.
``KIEMDICH_WEB_SESSION_IDLE_S=3600``); unknown keys given directly are refused.
The app uses ``app.state.web_settings`` when set (tests), else these from the
environment, read once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from fastapi import Request
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

WEB_ENV_PREFIX = "KIEMDICH_WEB_"


class WebSettings(BaseSettings):
    """Everything the web layer can be told."""

    model_config = SettingsConfigDict(
        env_prefix=WEB_ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    # A checkpoint shift is 12 hours; a screen left alone for 2 hours logs out.
    session_idle_s: int = Field(
        default=2 * 3600, ge=60, description="a session unused this long expires"
    )
    session_absolute_s: int = Field(
        default=12 * 3600, ge=60, description="a session expires this long after login"
    )
    session_touch_s: int = Field(
        default=60, ge=0, description="last use is written at most this often (saves writes)"
    )
    cookie_secure: bool | None = Field(
        default=None, description="Secure cookies; None: when the request came over HTTPS"
    )
    login_window_s: int = Field(default=15 * 60, ge=1, description="failed logins counted over")
    login_max_per_username: int = Field(
        default=5, ge=1, description="failed logins per username in the window before a wait"
    )
    login_max_per_ip: int = Field(
        default=30, ge=1, description="failed logins per client address in the window"
    )
    broker_passwd_file: Path | None = Field(
        default=None,
        description="mosquitto password file rewritten when a device is issued "
        "(the passwd that `kiemdich broker files --out DIR` wrote)",
    )
    broker_pid_file: Path | None = Field(
        default=None, description="mosquitto's pid file: SIGHUP makes it reload the passwords"
    )
    audit_page_size: int = Field(default=50, ge=1, le=1000)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.session_idle_s > self.session_absolute_s:
            raise ValueError("session_idle_s > session_absolute_s")
        return self


def web_settings(request: Request) -> WebSettings:
    """The app's web settings (``app.state.web_settings``, else read from the environment)."""
    state = request.app.state
    settings: WebSettings | None = getattr(state, "web_settings", None)
    if settings is None:
        settings = WebSettings()
        state.web_settings = settings
    return settings
