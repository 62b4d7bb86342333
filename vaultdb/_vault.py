"""The one place that talks to Vault: endpoints, timeouts, error classification, retries.

HTTP goes through :mod:`vaultdb._http` (the standard library). Every method turns its
failures into :mod:`vaultdb.errors` with a hint that names what to check. Idempotent calls
(login, renew, revoke, lookups) get a few quick retries with jittered exponential backoff
(tenacity) when Vault is unreachable or answers 5xx/429. A ``database/creds`` read is retried
only when the request surely never reached Vault (connection refused): after a timeout it may
have created a lease, so the caller decides. Tenacity is imported on the first retry, never
on a cold start that goes well.

A client holds one token at a time; the provider serialises calls with a lock.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from . import errors, settings
from ._clock import SYSTEM_CLOCK, Clock
from ._http import Exchange, HTTPStatusError, TransportError, VaultHTTP
from .auth import AuthMethod, TokenAuth

if TYPE_CHECKING:
    import tenacity

__all__ = [
    "DynamicSecret",
    "Health",
    "LoginResult",
    "StaticSecret",
    "TokenInfo",
    "VaultClient",
    "VaultSettings",
    "add_request_observer",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


RequestObserver = Callable[[str, str, float, str], None]
"""``observer(method, path, seconds, outcome)``, called after every Vault HTTP attempt.

``outcome`` is ``"ok"`` or the name of the :mod:`vaultdb.errors` class the failure became.
Paths never hold a secret (lease ids and tokens travel in bodies and headers)."""

_request_observers: list[RequestObserver] = []


def add_request_observer(observer: RequestObserver) -> Callable[[], None]:
    """Call ``observer`` after every Vault request made by any provider in this process.

    Used by :mod:`vaultdb.integrations.prometheus` for request latency. Observers run on the
    thread that made the request and must be quick; one that raises is logged and ignored.
    Returns a function that removes the observer.
    """
    _request_observers.append(observer)

    def remove() -> None:
        if observer in _request_observers:
            _request_observers.remove(observer)

    return remove


def _observe(method: str, path: str, seconds: float, outcome: str) -> None:
    for observer in list(_request_observers):
        try:
            observer(method, path, seconds, outcome)
        except Exception:
            logger.exception("Vault request observer %r raised; ignored", observer)


@dataclass(frozen=True)
class VaultSettings:
    """How to reach Vault. Fields left ``None`` are filled from ``VAULT_*`` / ``BAO_*``."""

    addr: str
    namespace: str | None = None
    #: ``True``, ``False`` (VAULT_SKIP_VERIFY) or a CA bundle path (VAULT_CACERT).
    verify: bool | str = True
    client_cert: tuple[str, str] | None = None
    #: Seconds for connecting and for each response; every call is bounded by it.
    timeout: float = 5.0

    @classmethod
    def resolve(
        cls,
        addr: str | None = None,
        *,
        namespace: str | None = None,
        verify: bool | str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> VaultSettings:
        """Fill the gaps from ``env`` (default: the environment), as the Vault CLI does."""
        found = settings.vault_connection(settings.environ() if env is None else env,
                                          verify_given=verify is not None)
        addr = addr or found["addr"]
        if not addr:
            raise errors.ConfigurationError(
                "No Vault address is configured.",
                hint="pass vault_addr=... or set VAULT_ADDR (or BAO_ADDR), "
                "e.g. https://vault.internal:8200",
            )
        if not addr.startswith(("http://", "https://")):
            raise errors.ConfigurationError(
                f"Vault address {addr!r} has no scheme.",
                hint="VAULT_ADDR must start with https:// (or http:// for a dev server)",
            )
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise errors.ConfigurationError(
                f"request_timeout={timeout!r} is not a number of seconds.",
                hint="request_timeout (or VAULTDB_REQUEST_TIMEOUT) must be more than 0")
        return cls(
            addr=addr.rstrip("/"),
            namespace=namespace or found["namespace"],
            verify=found["verify"] if verify is None else verify,
            client_cert=found["client_cert"],
            timeout=timeout or found["timeout"] or 5.0,
        )


@dataclass(frozen=True, eq=False)
class LoginResult:
    """A new (or handed-in) Vault token and what Vault said about it."""

    token: str = field(repr=False)
    accessor: str
    ttl: float
    renewable: bool
    #: False for a token handed in (TokenAuth): this process must not revoke it.
    owned: bool


@dataclass(frozen=True, eq=False)
class DynamicSecret:
    """What ``database/creds/<role>`` answered."""

    username: str
    password: str = field(repr=False)
    lease_id: str
    lease_duration: float
    renewable: bool


@dataclass(frozen=True, eq=False)
class StaticSecret:
    """What ``database/static-creds/<role>`` answered."""

    username: str
    password: str = field(repr=False)
    ttl: float


@dataclass(frozen=True)
class Health:
    """What ``sys/health`` says (for preflight checks)."""

    initialized: bool
    sealed: bool
    standby: bool
    version: str


@dataclass(frozen=True)
class TokenInfo:
    """What ``auth/token/lookup-self`` says about the current token (no secret in it)."""

    accessor: str
    ttl: float
    renewable: bool
    policies: tuple[str, ...]
    explicit_max_ttl: float
    period: float


@dataclass(frozen=True, eq=False)
class Renewal:
    """What a lease or token renewal granted."""

    ttl: float
    warnings: tuple[str, ...] = ()


def _clean(errors_: tuple[str, ...]) -> tuple[str, ...]:
    """Vault's error strings, without the multierror wrapping ("1 error occurred: * ...")."""
    cleaned = []
    for error in errors_:
        text = re.sub(r"^\d+ errors? occurred:", "", error.strip())
        parts = [part.strip().lstrip("*").strip() for part in text.splitlines()]
        text = "; ".join(" ".join(part.split()) for part in parts if part)
        if text:
            cleaned.append(text)
    return tuple(cleaned)


def _contains(vault_errors: tuple[str, ...], *needles: str) -> bool:
    text = " ".join(vault_errors).lower()
    return any(n in text for n in needles)


def classify(exc: BaseException, *, operation: str, method: str, path: str,
             hint: str | None = None, addr: str = "Vault") -> errors.VaultDBError:
    """Map a transport failure or a Vault error answer onto a vaultdb error (never a secret)."""
    ctx: dict[str, Any] = {"method": method, "path": path}
    if isinstance(exc, errors.VaultDBError):
        return exc
    if isinstance(exc, TransportError):
        if exc.kind == "tls":
            return errors.TLSConfigurationError(
                f"TLS with Vault failed while trying to {operation} ({exc.detail}).",
                hint="VAULT_CACERT (the CA that signed Vault's certificate), that VAULT_ADDR "
                "uses the name in the certificate, and VAULT_CLIENT_CERT/VAULT_CLIENT_KEY",
                **ctx,
            )
        if exc.kind == "unreachable":
            return errors.VaultUnavailableError(
                f"{addr} is unreachable while trying to {operation} ({exc.detail}).",
                hint="VAULT_ADDR, DNS and network policy between this pod and Vault",
                request_sent=False,
                **ctx,
            )
        if exc.kind == "timeout":
            return errors.VaultUnavailableError(
                f"{addr} did not answer in time while trying to {operation}.",
                hint="Vault's health and load; VAULTDB_REQUEST_TIMEOUT",
                request_sent=True,
                **ctx,
            )
        return errors.VaultUnavailableError(
            f"HTTP error talking to Vault while trying to {operation}: {exc.detail}.",
            hint="VAULT_ADDR and whatever sits between this process and Vault",
            request_sent=exc.sent,
            **ctx,
        )
    if isinstance(exc, HTTPStatusError):
        status, found = exc.status, _clean(exc.errors)
        ctx.update(status=status, vault_errors=found)
        if status == 503 or _contains(found, "sealed"):
            return errors.VaultUnavailableError(
                f"Vault is sealed or in standby while trying to {operation}.",
                hint="unseal Vault or check its HA status", request_sent=True, **ctx)
        if status >= 500 or status in (412, 429):
            return errors.VaultUnavailableError(
                f"Vault answered HTTP {status} while trying to {operation}.",
                hint="Vault's server log and health", request_sent=True, **ctx)
        if _contains(found, "lease not found", "invalid lease", "lease expired",
                     "lease is not renewable", "past the max ttl"):
            return errors.LeaseNotFoundError(
                f"Vault no longer knows the lease while trying to {operation}.",
                hint="nothing: vaultdb fetches fresh credentials", **ctx)
        if status == 403:
            return errors.PermissionDeniedError(
                f"Permission denied while trying to {operation}.",
                hint=hint or "the Vault policy attached to this login grants the capability "
                f"needed on {path}", **ctx)
        if status == 401:
            return errors.AuthenticationError(
                f"Vault rejected the token while trying to {operation}.",
                hint="the auth method and its credentials", **ctx)
        if status == 404 or _contains(found, "unknown role", "no handler for route",
                                      "role not found"):
            return errors.SecretPathError(
                f"Nothing at {path} while trying to {operation}.",
                hint=hint or "the secrets engine mount and role name", **ctx)
        return errors.VaultDBError(
            f"Vault refused the request while trying to {operation}.",
            hint=hint, **ctx)
    if isinstance(exc, (KeyError, TypeError, ValueError)):
        return errors.VaultUnavailableError(
            f"Vault sent a malformed answer while trying to {operation}.",
            hint="whatever sits between this process and Vault (proxy, load balancer)",
            request_sent=True, **ctx)
    return errors.VaultDBError(
        f"Unexpected error while trying to {operation}: {type(exc).__name__}.", **ctx)


def _retry_safe(exc: BaseException) -> bool:
    return isinstance(exc, errors.VaultUnavailableError)


def _retry_unsent_only(exc: BaseException) -> bool:
    return isinstance(exc, errors.VaultUnavailableError) and not exc.request_sent


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    logger.warning("Vault call failed (%s); retry %d in %.2fs", exc, state.attempt_number,
                   state.next_action.sleep if state.next_action else 0.0)


class VaultClient:
    """Typed Vault endpoints with classified errors and bounded retries; holds one token."""

    def __init__(self, settings: VaultSettings, *, attempts: int = 3,
                 clock: Clock = SYSTEM_CLOCK, exchange: Exchange | None = None) -> None:
        self.settings = settings
        self._attempts = attempts
        self._http = VaultHTTP(settings.addr, timeout=settings.timeout, verify=settings.verify,
                               client_cert=settings.client_cert, namespace=settings.namespace,
                               clock=clock, exchange=exchange)
        self.token: str | None = None

    def __repr__(self) -> str:
        return f"VaultClient(addr={self.settings.addr!r})"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                 params: dict[str, str] | None = None, token: str | None = None
                 ) -> dict[str, Any]:
        return self._http.request(method, path, token=token or self.token, body=body,
                                  params=params).data

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], *, operation: str, method: str, path: str,
              retry_if: Callable[[BaseException], bool] = _retry_safe,
              hint: str | None = None, budget: float | None = None) -> T:
        """Run ``fn`` with error classification and bounded retries."""
        def attempt() -> T:
            started, outcome = time.perf_counter(), "ok"
            try:
                return fn()
            except Exception as exc:  # classified below; nothing escapes unclassified
                error = classify(exc, operation=operation, method=method, path=path,
                                 hint=hint, addr=f"Vault at {self.settings.addr}")
                outcome = type(error).__name__
                raise error from exc
            finally:
                if _request_observers:
                    _observe(method, path, time.perf_counter() - started, outcome)

        budget = budget if budget is not None else 3 * self.settings.timeout
        started = time.monotonic()
        try:
            return attempt()
        except errors.VaultDBError as exc:
            if self._attempts < 2 or not retry_if(exc):
                raise
            first_failure: BaseException | None = exc
        # Only a first attempt that failed and may be retried pays for tenacity (its import
        # costs more than a Vault round trip on a cold start). Tenacity replays that failure
        # as its own attempt 1, so backoff, logging and limits are exactly as if it had run
        # every attempt itself.
        import tenacity

        def replay_then_attempt() -> T:
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return attempt()

        elapsed = time.monotonic() - started
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._attempts)
            | tenacity.stop_after_delay(max(0.0, budget - elapsed)),
            wait=tenacity.wait_random_exponential(multiplier=0.2, max=2.0),
            retry=tenacity.retry_if_exception(retry_if),
            before_sleep=_log_retry,
            reraise=True,
        )
        return retrying(replay_then_attempt)

    # -- auth -------------------------------------------------------------------------------

    def login(self, auth: AuthMethod) -> LoginResult:
        """Log in with ``auth`` (re-reading its token file) and use the new token."""
        if isinstance(auth, TokenAuth):
            token = auth.read_token()
            self.token = token

            def lookup() -> LoginResult:
                info = self._request("GET", "auth/token/lookup-self")["data"]
                return LoginResult(token=token, accessor=info.get("accessor", ""),
                                   ttl=float(info.get("ttl") or 0),
                                   renewable=bool(info.get("renewable")), owned=False)

            try:
                return self._call(lookup, operation="look up the Vault token", method="GET",
                                  path="auth/token/lookup-self", hint=auth.login_hint())
            except errors.PermissionDeniedError as exc:
                raise self.login_error(exc, auth) from exc
        payload = auth.login_payload()
        path = f"auth/{auth.mount}/login"
        self.token = None

        def login() -> LoginResult:
            a = self._request("POST", path, payload)["auth"]
            return LoginResult(token=a["client_token"], accessor=a.get("accessor", ""),
                               ttl=float(a.get("lease_duration") or 0),
                               renewable=bool(a.get("renewable")), owned=True)

        try:
            result = self._call(login, operation=f"log in with {auth.describe()}",
                                method="POST", path=path, hint=auth.login_hint())
        except errors.VaultDBError as exc:
            raise self.login_error(exc, auth) from exc
        self.token = result.token
        return result

    def login_error(self, exc: errors.VaultDBError, auth: AuthMethod) -> errors.VaultDBError:
        """Login failures other than outages are authentication errors, whatever the status."""
        if isinstance(exc, (errors.VaultUnavailableError, errors.ConfigurationError,
                            errors.AuthenticationError)) and not isinstance(
                                exc, errors.SecretPathError):
            return exc
        return errors.AuthenticationError(
            f"Vault refused the login with {auth.describe()}.", hint=auth.login_hint(),
            method=exc.method, path=exc.path, status=exc.status, vault_errors=exc.vault_errors)

    def renew_self(self, increment: int) -> Renewal:
        def renew() -> Renewal:
            data = self._request("POST", "auth/token/renew-self", {"increment": increment})
            return Renewal(ttl=float(data["auth"]["lease_duration"]),
                           warnings=tuple(data.get("warnings") or ()))

        return self._call(renew, operation="renew the login token", method="POST",
                          path="auth/token/renew-self")

    def revoke_token(self, token: str) -> None:
        """Revoke a token this process created (it takes its leases with it)."""
        self._call(lambda: self._request("POST", "auth/token/revoke-self", token=token),
                   operation="revoke the login token",
                   method="POST", path="auth/token/revoke-self",
                   budget=self.settings.timeout)

    # -- secrets ----------------------------------------------------------------------------

    def read_dynamic(self, mount: str, role: str) -> DynamicSecret:
        """Create new dynamic credentials. Never retried once the request may have been sent."""
        path = f"{mount}/creds/{role}"
        def read() -> DynamicSecret:
            data = self._request("GET", path)
            return DynamicSecret(
                username=data["data"]["username"], password=data["data"]["password"],
                lease_id=data["lease_id"], lease_duration=float(data["lease_duration"]),
                renewable=bool(data.get("renewable")))

        return self._call(
            read, operation=f"read database credentials for role {role!r}", method="GET",
            path=path, retry_if=_retry_unsent_only,
            hint=f"that the database secrets engine is mounted at {mount!r}, role {role!r} "
            f"exists, and the policy grants 'read' on {path}")

    def read_static(self, mount: str, role: str) -> StaticSecret:
        path = f"{mount}/static-creds/{role}"
        def read() -> StaticSecret:
            d = self._request("GET", path)["data"]
            return StaticSecret(username=d["username"], password=d["password"],
                                ttl=float(d.get("ttl") or 0))

        return self._call(
            read, operation=f"read static database credentials for role {role!r}",
            method="GET", path=path,
            hint=f"that static role {role!r} exists under the {mount!r} mount and the policy "
            f"grants 'read' on {path}")

    def renew_lease(self, lease_id: str, increment: int) -> Renewal:
        def renew() -> Renewal:
            data = self._request("PUT", "sys/leases/renew",
                                 {"lease_id": lease_id, "increment": increment})
            return Renewal(ttl=float(data["lease_duration"]),
                           warnings=tuple(data.get("warnings") or ()))

        return self._call(renew, operation="renew the database lease", method="PUT",
                          path="sys/leases/renew",
                          hint="the policy grants 'update' on sys/leases/renew")

    def revoke_lease(self, lease_id: str, *, budget: float | None = None) -> None:
        """Revoke synchronously, so the database user is gone when this returns."""
        self._call(
            lambda: self._request("PUT", "sys/leases/revoke",
                                  {"lease_id": lease_id, "sync": True}),
            operation="revoke the database lease", method="PUT", path="sys/leases/revoke",
            hint="the policy grants 'update' on sys/leases/revoke", budget=budget)

    def capabilities(self, paths: list[str]) -> dict[str, list[str]]:
        """The current token's capabilities on ``paths`` (for preflight checks)."""
        data = self._call(
            lambda: self._request("POST", "sys/capabilities-self", {"paths": paths}),
            operation="read token capabilities", method="POST", path="sys/capabilities-self")
        body = data.get("data", data)
        return {p: list(body.get(p, [])) for p in paths}

    def health(self) -> Health:
        """``sys/health`` (unauthenticated), answered with 200 whatever the node's state."""
        params = {"standbyok": "true", "sealedcode": "200", "uninitcode": "200",
                  "perfstandbyok": "true", "drsecondarycode": "200"}

        def read() -> Health:
            d = self._request("GET", "sys/health", params=params)
            return Health(initialized=bool(d.get("initialized")), sealed=bool(d.get("sealed")),
                          standby=bool(d.get("standby")), version=str(d.get("version") or "?"))

        return self._call(read, operation="read Vault's health", method="GET", path="sys/health")

    def lookup_self(self) -> TokenInfo:
        """The current token's TTL, renewability and policies (default policy grants it)."""
        def lookup() -> TokenInfo:
            d = self._request("GET", "auth/token/lookup-self")["data"]
            return TokenInfo(accessor=str(d.get("accessor") or ""), ttl=float(d.get("ttl") or 0),
                             renewable=bool(d.get("renewable")),
                             policies=tuple(d.get("policies") or ()),
                             explicit_max_ttl=float(d.get("explicit_max_ttl") or 0),
                             period=float(d.get("period") or 0))

        return self._call(lookup, operation="look up the Vault token", method="GET",
                          path="auth/token/lookup-self")
