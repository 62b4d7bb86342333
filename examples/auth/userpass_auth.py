"""A login method vaultdb does not ship, written by its user: OpenBao's ``userpass``.

``AuthBase`` gives the defaults; a method overrides what differs. Here: the login path names
the user (``auth/userpass/login/<username>``), and the password is read from a file at every
login, wrapped in ``Secret`` so that a traceback's frame locals show ``Secret('***')``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vaultdb import AuthBase, ConfigurationError
from vaultdb.auth import Secret


@dataclass(frozen=True)
class UserpassAuth(AuthBase):
    """``POST auth/<mount>/login/<username>`` with the password from ``password_path``."""

    username: str
    password_path: str
    mount: str = "userpass"
    method: str = field(default="userpass", init=False)

    def login_path(self) -> str:
        return f"auth/{self.mount}/login/{self.username}"

    def login_payload(self) -> dict[str, Any]:
        try:
            with open(self.password_path, encoding="utf-8") as fh:
                return {"password": Secret(fh.read().strip())}
        except OSError as exc:
            reason = exc.strerror
        raise ConfigurationError(  # outside the except block: no chained exception
            f"The password file {self.password_path!r} cannot be read ({reason}).",
            hint="password_path, and that the secret is mounted there")

    def describe(self) -> str:
        return f"userpass auth at auth/{self.mount}, user {self.username!r}"

    def login_hint(self) -> str:
        return (f"that auth method 'userpass' is enabled at auth/{self.mount}, user "
                f"{self.username!r} exists and the password in {self.password_path!r} is its own")
