"""The `console:` section of config.yaml: the web console's listener, users, sessions and limits."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from playbookd.config.base import Model, duration


class Console(Model):
    enabled: bool = Field(False, description="Serve the web console under /console/ (README \"Console\")")
    listen: str | None = Field(None, pattern=r"^.+:\d+$", description="host:port of a listener of the console's "
                               "own; unset: under /console/ on http.listen (often public: prefer its own)")
    auth: Literal["password", "proxy"] = Field("password", description="password: users in users_file; proxy: "
                                               "a reverse proxy's user header, trusted only from trusted_proxies")
    users_file: Path = Field(Path("console-users.txt"), description="Console users and password hashes, written "
                             "by `playbookd console add-user`")
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"],
                                       description="Addresses (CIDR) whose proxy headers are believed")
    proxy_user_header: str = Field("X-Remote-User", description="auth: proxy: the header naming the user")
    proxy_role_header: str = Field("X-Remote-Role", description="auth: proxy: the header with the role (viewer or "
                                   "operator); missing: viewer")
    session_minutes: int = Field(480, ge=1, le=43_200, description="A login lasts this long")
    secure_cookies: Literal["auto", "always"] = Field("auto", description="auto: Secure cookies when the request "
                                                      "came over TLS (or a trusted proxy says so); always: every time")
    max_failed_logins: int = Field(5, ge=1, description="Failed logins per user, and per address, within "
                                   "login_window before further tries are refused")
    login_window: timedelta = Field(timedelta(minutes=15), description="The window failed logins are counted in")
    page_size: int = Field(50, ge=5, le=1000, description="Rows per page of every console list")
    _d = field_validator("login_window", mode="before")(duration)
