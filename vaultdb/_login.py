"""What a login method may ask of Vault while it logs in: :class:`LoginContext`.

A method's ``login(vault)`` hook (see :class:`vaultdb.auth.AuthBase`) gets one of these and
returns a :class:`~vaultdb._vault.LoginResult`. Every call is bounded by the login's deadline,
classified into :mod:`vaultdb.errors` and raised outside any ``except`` block with no chained
cause, like every other Vault call. Secrets travel as :class:`~vaultdb._secret.Secret`: a login
body may hold ``Secret`` values (revealed only while the request is built), and
:meth:`LoginContext.unwrap` returns one, so the frames of a method's hook never hold a secret
in clear when an error passes through them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._http import VaultHTTP
from ._secret import Secret

if TYPE_CHECKING:
    from ._vault import LoginResult, VaultClient

__all__ = ["LoginContext", "Payload"]

#: A login body, or a function building it (called per attempt, so files are read fresh).
Payload = Mapping[str, Any] | Callable[[], Mapping[str, Any]]


def _reveal(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.reveal() if isinstance(v, Secret) else v for k, v in body.items()}


class LoginContext:
    """The calls a login may make: a login request, a token lookup, an unwrap, or none."""

    def __init__(self, vault: VaultClient, *, deadline: float, operation: str,
                 hint: str | None) -> None:
        self._vault = vault
        self.deadline = deadline
        self._operation = operation
        self._hint = hint

    @property
    def addr(self) -> str:
        """Vault's address as configured (``https://...``, ``http://...``, ``unix://...``)."""
        return self._vault.settings.addr

    def login(self, path: str, payload: Payload, *,
              client_cert: tuple[str, str | None] | None = None) -> LoginResult:
        """``POST path`` with ``payload``; the token in Vault's ``auth`` answer (owned).

        ``client_cert`` (certificate and key file) is presented for this request only; the
        files are read when the TLS connection is made, so a rotated pair is picked up.
        """
        from ._vault import LoginResult, _seconds, _text

        http = self._vault._http
        if client_cert is not None:
            http = http.with_client_cert(*client_cert)

        def send(end: float) -> LoginResult:
            body = payload() if callable(payload) else payload
            a = self._send(http, "POST", path, _reveal(body), None, end)["auth"]
            return LoginResult(token=Secret(_text(a.get("client_token"), "client_token")),
                               accessor=str(a.get("accessor") or ""),
                               ttl=_seconds(a.get("lease_duration", 0), "lease_duration"),
                               renewable=bool(a.get("renewable")), owned=True)

        return self._vault._call(send, operation=self._operation, method="POST", path=path,
                                 hint=self._hint, deadline=self.deadline)

    def lookup_token(self, token: Secret) -> LoginResult:
        """A token handed in (``VAULT_TOKEN``, a sink file): looked up, never owned."""
        from ._vault import LoginResult

        info = self._vault.lookup_self(token, deadline=self.deadline)
        return LoginResult(token=token, accessor=info.accessor, ttl=info.ttl,
                           renewable=info.renewable, owned=False)

    def no_token(self, *, check: bool = True) -> LoginResult:
        """No token at all: something in front of Vault (a Vault Proxy or Agent with
        ``use_auto_auth_token``) adds its own to every request.

        The result has an empty token and accessor, ``ttl`` 0 and is not owned: vaultdb never
        renews or revokes it, and the deadlines of credentials come from their leases alone.
        With ``check``, ``auth/token/lookup-self`` is asked without a token first, so a proxy
        that adds none fails here with an error that says so.
        """
        from ._vault import LoginResult

        if check:
            self._vault.lookup_self(Secret(""), deadline=self.deadline)
        return LoginResult(token=Secret(""), accessor="", ttl=0.0, renewable=False, owned=False)

    def unwrap(self, wrapping_token: Secret, key: str) -> Secret:
        """``sys/wrapping/unwrap`` with ``wrapping_token``; the wrapped ``data[key]``.

        A wrapping token works once: the request is not retried once it may have reached
        Vault (a lost answer would have used it up).
        """
        from ._vault import _Impossible, _retry_unsent_only

        def send(end: float) -> Secret:
            data = self._send(self._vault._http, "POST", "sys/wrapping/unwrap", {},
                              wrapping_token, end).get("data")
            value = data.get(key) if isinstance(data, dict) else None
            if not isinstance(value, str) or not value:
                raise _Impossible(f"the unwrapped answer has no {key!r}")
            return Secret(value)

        return self._vault._call(
            send, operation="unwrap the response-wrapped secret", method="POST",
            path="sys/wrapping/unwrap", deadline=self.deadline, retry_if=_retry_unsent_only,
            hint="that the wrapping token is fresh (single use, within its TTL): the delivery "
            "system must write a new one for every login")

    def _send(self, http: VaultHTTP, method: str, path: str, body: dict[str, Any] | None,
              token: Secret | None, end: float) -> dict[str, Any]:
        vault = self._vault
        answer = http.request(method, path, token=token.reveal() if token else None, body=body,
                              deadline=end, headers=vault.headers or None)
        vault.record_index(answer.headers)
        return answer.data
