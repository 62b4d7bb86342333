"""The one place that talks to Vault: endpoints, timeouts, error classification, retries.

HTTP goes through :mod:`vaultdb._http` (the standard library). Every method turns its
failures into :mod:`vaultdb.errors` with a hint that names what to check. Idempotent calls
(login, renew, revoke, lookups) get a few quick retries (tenacity, with the values of
:class:`vaultdb._retry.RetryPolicy`) when Vault is unreachable or answers 5xx/429/412, all
within the caller's deadline. A ``database/creds`` read is retried only when the request surely
never reached Vault (connection refused) or Vault said it did not process it (412, 429, 503):
after a timeout it may have created a lease, so the caller decides.

Answers are checked: a TTL that is not a finite number of seconds in a sane range is an
:class:`~vaultdb.errors.InvalidResponseError`, never a raw ``ValueError`` or an absurd deadline.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from . import errors, settings
from ._clock import SYSTEM_CLOCK, Clock
from ._http import Exchange, HTTPStatusError, RedirectRefusedError, TransportError, VaultHTTP
from ._login import LoginContext
from ._retry import RetryPolicy
from ._secret import Secret
from .auth import AuthMethod

if TYPE_CHECKING:
    import tenacity

__all__ = [
    "DynamicSecret",
    "Health",
    "LoginResult",
    "RequestInfo",
    "StaticSecret",
    "TokenInfo",
    "VaultClient",
    "VaultSettings",
    "add_request_observer",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RequestInfo:
    """What a request observer is told about one Vault HTTP attempt. Never holds a secret.

    New fields are added with defaults, so observers written today keep working.
    """

    method: str
    #: The API path without ``/v1/``; lease ids and tokens travel in bodies and headers.
    path: str
    seconds: float
    #: ``"ok"`` or the name of the :mod:`vaultdb.errors` class the failure became.
    outcome: str
    #: The HTTP status, or ``None`` when there was no answer (timeout, refused connection).
    status: int | None = None
    #: The database role the request served, when it served one.
    role: str | None = None
    #: The credential generation the request served (renewal, revocation), when known.
    generation: int | None = None


RequestObserver = Callable[[RequestInfo], None]

_request_observers: list[RequestObserver] = []


def add_request_observer(observer: RequestObserver) -> Callable[[], None]:
    """Call ``observer(info)`` after every Vault request made by any provider in this process.

    ``info`` is a :class:`RequestInfo`. Used by :mod:`vaultdb.integrations.prometheus` for
    request latency and counts. Observers run on the thread that made the request and must be
    quick; one that raises is logged and ignored. Returns a function that removes it.
    """
    _request_observers.append(observer)

    def remove() -> None:
        if observer in _request_observers:
            _request_observers.remove(observer)

    return remove


def _observe(info: RequestInfo) -> None:
    for observer in list(_request_observers):
        try:
            observer(info)
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
    #: Hosts (``host`` or ``host:port``) a 307/308 from Vault may send the token and body to.
    redirect_hosts: frozenset[str] = frozenset()

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
        if not addr.startswith(("http://", "https://", "unix://")):
            raise errors.ConfigurationError(
                f"Vault address {addr!r} has no scheme.",
                hint="VAULT_ADDR must start with https:// (or http:// for a dev server, "
                "unix:///path for a local Vault Proxy's socket)",
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
            redirect_hosts=found["redirect_hosts"],
        )


@dataclass(frozen=True, eq=False)
class LoginResult:
    """A new (or handed-in) Vault token and what Vault said about it."""

    token: Secret = field(repr=False)
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


#: What Vault's database plugins say when the database itself is down or refuses Vault.
_DATABASE_UNREACHABLE = ("failed to connect to", "dial tcp", "unable to start transaction",
                         "error verifying connection", "password authentication failed",
                         "access denied for user", "can't connect to mysql server")


def _contains(vault_errors: tuple[str, ...], *needles: str) -> bool:
    text = " ".join(vault_errors).lower()
    return any(n in text for n in needles)


def classify(exc: BaseException, *, operation: str, method: str, path: str,
             hint: str | None = None, addr: str = "Vault") -> errors.VaultDBError:
    """Map a transport failure or a Vault error answer onto a vaultdb error (never a secret)."""
    ctx: dict[str, Any] = {"method": method, "path": path}
    if isinstance(exc, errors.VaultDBError):
        return exc
    if isinstance(exc, RedirectRefusedError):
        # Retryable: a standby answers 307 to the old leader during an election (seen with
        # OpenBao 2.7.2), and the request was not processed. If it lasts, the message says
        # what to configure.
        return errors.VaultUnavailableError(
            f"Vault redirected elsewhere while trying to {operation} ({exc.detail}).",
            hint="VAULT_ADDR (point it at a node or Service that forwards requests), or list "
            "the redirect's host in VAULTDB_REDIRECT_HOSTS", request_sent=False, **ctx)
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
        if _contains(found, "active cluster node not found", "local node not active"):
            return errors.VaultUnavailableError(
                f"The Vault cluster has no active node (a leader election) while trying to "
                f"{operation}.", hint="nothing if it passes in seconds; else the cluster's Raft "
                "quorum (sys/storage/raft/configuration)", request_sent=True, **ctx)
        if status == 503 or _contains(found, "sealed"):
            return errors.VaultUnavailableError(
                f"Vault is sealed or in standby while trying to {operation}.",
                hint="unseal Vault or check its HA status", request_sent=True, **ctx)
        if status >= 500 and _contains(found, *_DATABASE_UNREACHABLE):
            # The database plugin could not reach or log in to the database: nothing a Vault
            # operator's health check shows, so the hint names the connection to check.
            return errors.VaultUnavailableError(
                f"Vault could not reach the database while trying to {operation}.",
                hint="the database connection Vault uses (`vault read <mount>/config/<name>`): "
                "that the database is up and reachable from Vault, and that Vault's own "
                "credentials for it still work", request_sent=True, **ctx)
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
    """A ``database/creds`` read is retried only when it surely never reached Vault, or Vault
    said it did not process it (412: a standby not caught up; 429/503 are refused up front)."""
    if not isinstance(exc, errors.VaultUnavailableError):
        return False
    return not exc.request_sent or exc.status in (412, 429, 503)


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    logger.warning("Vault call failed (%s); retry %d in %.2fs", exc, state.attempt_number,
                   state.next_action.sleep if state.next_action else 0.0)


#: Longest lease or token TTL taken at face value (ten years); longer is an impossible answer.
MAX_SANE_TTL = 10 * 365 * 24 * 3600.0


def _seconds(value: Any, what: str) -> float:
    """A TTL from Vault's answer, checked: a finite number of seconds in a sane range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Impossible(f"{what} is not a number")
    seconds = float(value)
    if not (0 <= seconds <= MAX_SANE_TTL):  # False for NaN too
        raise _Impossible(f"{what} is out of range")
    return seconds


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Impossible(f"{what} is missing or not a string")
    return value


def _index_position(index: str) -> tuple[str, int] | None:
    """``(cluster, value)`` of an OpenBao/Vault Raft index header (base64 JSON), or None."""
    try:
        state = json.loads(base64.b64decode(index, validate=True))
        cluster, value = state["cluster"], state["value"]
        if isinstance(cluster, str) and isinstance(value, (str, int)) and str(value).isdigit():
            return cluster, int(value)
    except (ValueError, TypeError, KeyError, binascii.Error):
        pass
    return None


def newer_index(held: str | None, seen: str) -> str:
    """The ``X-Vault-Index`` to send next: the later of the one held and the one just seen.

    Every answer carries the index of the node that gave it, and a standby that lags answers
    with an older one than the client's last write; taking it would lose read-after-write.
    Indexes of one cluster compare by their Raft value; anything else is opaque, and the one
    just seen wins.
    """
    if not held or held == seen:
        return seen
    a, b = _index_position(held), _index_position(seen)
    if a is not None and b is not None and a[0] == b[0] and a[1] > b[1]:
        return held
    return seen


class _Impossible(Exception):
    """Raised while parsing an answer whose values no lease can have."""


class VaultCaller:
    """How every Vault call is made: headers, deadline, classification, retries in place.

    Read-after-write consistency on a cluster whose standbys serve reads: the newest
    ``X-Vault-Index`` seen is sent back with the next requests, with ``X-Vault-Inconsistent:
    forward-active-node``, so a standby that has not yet seen this client's login or lease
    forwards the request to the leader (OpenBao 2.7; Vault Enterprise where the server allows
    it) instead of answering 403 or "lease not found". A node that cannot forward answers 412
    (Vault) or 429 (OpenBao): both retried in place. Nodes that send no index get none back.

    Stateless about tokens: each call takes the token it runs with (a :class:`Secret`), so one
    client can serve a login session shared by several providers. ``self.token`` is the default
    for callers that hold one token (the preflight check, tests). Every call ends by its
    ``deadline`` (a time on ``clock``; default: three request timeouts from now).
    """

    def __init__(self, settings: VaultSettings, *, attempts: int | None = None,
                 clock: Clock = SYSTEM_CLOCK, exchange: Exchange | None = None,
                 retry: RetryPolicy | None = None, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.clock = clock
        #: Draws the retry jitter (the simulation seeds it, so a lifetime replays exactly).
        self.rng = rng
        self.retry = retry or RetryPolicy()
        if attempts is not None:
            self.retry = replace(self.retry, attempts=attempts)
        self._http = VaultHTTP(settings.addr, timeout=settings.timeout, verify=settings.verify,
                               client_cert=settings.client_cert, namespace=settings.namespace,
                               clock=clock, exchange=exchange,
                               redirect_hosts=settings.redirect_hosts)
        self.token: Secret | None = None
        #: Request headers every call carries (the consistency index).
        self.headers: dict[str, str] = {}
        self._stale_answers = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(addr={self.settings.addr!r})"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                 params: dict[str, str] | None = None, token: Secret | None = None,
                 deadline: float) -> dict[str, Any]:
        secret = token or self.token
        answer = self._http.request(method, path, token=secret.reveal() if secret else None,
                                    body=body, params=params, deadline=deadline,
                                    headers=self.headers or None)
        self.record_index(answer.headers)
        return answer.data

    def record_index(self, answer_headers: Mapping[str, str]) -> None:
        """Keep the newer of the index held and the one in this answer (see
        :func:`newer_index`); send it, with the forwarding hint, from now on."""
        self._stale_answers = 0
        seen = answer_headers.get("x-vault-index")
        if seen:
            self.headers["X-Vault-Index"] = newer_index(self.headers.get("X-Vault-Index"), seen)
            self.headers["X-Vault-Inconsistent"] = "forward-active-node"

    def forget_index(self) -> None:
        self.headers.pop("X-Vault-Index", None)
        self.headers.pop("X-Vault-Inconsistent", None)

    def _saw_stale(self) -> None:
        """A 412, or a 429 to a request carrying an index: the node has not caught up with
        the index sent and did not forward. Retried in place; a second one in a row drops the
        index (a restarted dev server may never reach it)."""
        self._stale_answers += 1
        if self._stale_answers >= 2 and "X-Vault-Index" in self.headers:
            logger.info("Vault answered %s twice for the consistency index sent; going on "
                        "without it", "412/429")
            self.forget_index()

    def _deadline(self, deadline: float | None) -> float:
        return self.clock.monotonic() + 3 * self.settings.timeout if deadline is None else deadline

    def _call(self, fn: Callable[[float], T], *, operation: str, method: str, path: str,
              deadline: float | None, retry_if: Callable[[BaseException], bool] = _retry_safe,
              hint: str | None = None, attempts: int | None = None, role: str | None = None,
              generation: int | None = None) -> T:
        """Run ``fn(deadline)`` with error classification and retries within ``deadline``.

        The classified error is raised here, outside the ``except`` block, with no chained
        cause: the frames that built the request (token header, login body) are not in its
        traceback, so error trackers that capture frame locals never see a secret.
        """
        end = self._deadline(deadline)

        def attempt() -> T:
            started, outcome, status = self.clock.monotonic(), "ok", None
            error: errors.VaultDBError | None = None
            try:
                return fn(end)
            except Exception as exc:  # classified below; nothing escapes unclassified
                if isinstance(exc, _Impossible):
                    error = errors.InvalidResponseError(
                        f"Vault's answer while trying to {operation} makes no sense ({exc}).",
                        hint="the database role's TTLs in Vault, and whatever sits between "
                        "this process and Vault", method=method, path=path)
                else:
                    error = classify(exc, operation=operation, method=method, path=path,
                                     hint=hint, addr=f"Vault at {self.settings.addr}")
                outcome, status = type(error).__name__, error.status
                if status == 412 or (status == 429 and "X-Vault-Index" in self.headers):
                    self._saw_stale()
            finally:
                if _request_observers:
                    _observe(RequestInfo(method, path, self.clock.monotonic() - started,
                                         outcome, status if error else 200, role, generation))
            raise error.with_traceback(None)  # not the frames that built the request

        if self.clock.monotonic() >= end:
            raise errors.VaultUnavailableError(
                f"No time left to {operation} (the caller's deadline passed).",
                hint="VAULTDB_FETCH_TIMEOUT / VAULTDB_REVOKE_TIMEOUT", request_sent=False,
                method=method, path=path)
        # The first attempt runs before tenacity is even imported: most calls succeed, and
        # its import (~4.5 ms of CPU) then stays off the start-up path. A failure is handed to
        # tenacity as its own attempt 1, so waits, stops and logs are tenacity's unchanged.
        try:
            return attempt()
        except errors.VaultDBError as exc:
            first: errors.VaultDBError | None = exc

        def again() -> T:
            nonlocal first
            if first is not None:
                failed, first = first, None
                raise failed
            return attempt()

        retrying = self.retry.retrying(clock=self.clock, deadline=end, retry_if=retry_if,
                                       before_sleep=_log_retry, attempts=attempts, rng=self.rng)
        return retrying(again)



class VaultClient(VaultCaller):
    """Typed Vault endpoints with classified errors and bounded retries (see VaultCaller)."""

    # -- auth -------------------------------------------------------------------------------

    def login(self, auth: AuthMethod, *, deadline: float | None = None) -> LoginResult:
        """Log in with ``auth`` (re-reading its files) and make the new token the default.

        A method with a ``login(vault)`` hook (:class:`vaultdb.auth.AuthBase`) decides what
        the login does through a :class:`~vaultdb._login.LoginContext`: a login request with
        or without a client certificate, a token lookup, an unwrap first, or no token at all.
        A method with only ``login_payload`` posts it to ``auth/<mount>/login``, as before.
        """
        context = LoginContext(self, deadline=self._deadline(deadline),
                               operation=f"log in with {auth.describe()}",
                               hint=auth.login_hint())
        hook = getattr(auth, "login", None)
        try:
            if callable(hook):
                result: LoginResult = hook(context)
            else:
                result = context.login(f"auth/{auth.mount}/login", auth.login_payload)
        except errors.VaultDBError as exc:
            error = self.login_error(exc, auth)
        else:
            self.token = result.token
            return result
        # Raised afresh, without the frames that read the secret (an auth method's file or
        # value check) and that error trackers would record with their locals.
        raise error.with_traceback(None)

    def login_error(self, exc: errors.VaultDBError, auth: AuthMethod) -> errors.VaultDBError:
        """Login failures other than outages are authentication errors, whatever the status."""
        if isinstance(exc, (errors.VaultUnavailableError, errors.ConfigurationError,
                            errors.AuthenticationError, errors.InvalidResponseError)
                      ) and not isinstance(exc, errors.SecretPathError):
            return exc
        return errors.AuthenticationError(
            f"Vault refused the login with {auth.describe()}.", hint=auth.login_hint(),
            method=exc.method, path=exc.path, status=exc.status, vault_errors=exc.vault_errors)

    def lookup_self(self, token: Secret | None = None, *, deadline: float | None = None
                    ) -> TokenInfo:
        """The token's TTL, renewability and policies (the default policy grants it)."""
        def lookup(end: float) -> TokenInfo:
            d = self._request("GET", "auth/token/lookup-self", token=token, deadline=end)["data"]
            ttl = _seconds(d.get("ttl") or 0, "ttl")
            if ttl == 0 and d.get("expire_time"):
                ttl = 0.001  # "ttl 0" with an expiry: a token in its last second, not immortal
            return TokenInfo(accessor=str(d.get("accessor") or ""), ttl=ttl,
                             renewable=bool(d.get("renewable")),
                             policies=tuple(d.get("policies") or ()),
                             explicit_max_ttl=float(d.get("explicit_max_ttl") or 0),
                             period=float(d.get("period") or 0))

        return self._call(lookup, operation="look up the Vault token", method="GET",
                          path="auth/token/lookup-self", deadline=deadline)

    def renew_self(self, increment: int, token: Secret | None = None, *,
                   deadline: float | None = None) -> Renewal:
        def renew(end: float) -> Renewal:
            data = self._request("POST", "auth/token/renew-self", {"increment": increment},
                                 token=token, deadline=end)
            return Renewal(ttl=_seconds(data["auth"]["lease_duration"], "lease_duration"),
                           warnings=_warnings(data))

        return self._call(renew, operation="renew the login token", method="POST",
                          path="auth/token/renew-self", deadline=deadline)

    def revoke_token(self, token: Secret, *, deadline: float | None = None,
                     attempts: int | None = None) -> None:
        """Revoke a token this process created (it takes its leases with it)."""
        self._call(lambda end: self._request("POST", "auth/token/revoke-self", token=token,
                                             deadline=end),
                   operation="revoke the login token", method="POST",
                   path="auth/token/revoke-self", deadline=deadline, attempts=attempts)

    # -- secrets ----------------------------------------------------------------------------

    def read_dynamic(self, mount: str, role: str, token: Secret | None = None, *,
                     deadline: float | None = None) -> DynamicSecret:
        """Create new dynamic credentials. Never retried once the request may have been sent.

        An answer with an impossible TTL revokes the lease it created (with the same token)
        before raising :class:`~vaultdb.errors.InvalidResponseError`.
        """
        path = f"{mount}/creds/{role}"

        def read(end: float) -> DynamicSecret:
            data = self._request("GET", path, token=token, deadline=end)
            lease_id = _text(data.get("lease_id"), "lease_id")
            try:
                body = data["data"]
                return DynamicSecret(
                    username=_text(body.get("username"), "username"),
                    password=_text(body.get("password"), "password"),
                    lease_id=lease_id,
                    lease_duration=_seconds(data.get("lease_duration"), "lease_duration"),
                    renewable=bool(data.get("renewable")))
            except (_Impossible, KeyError, TypeError, AttributeError):
                self._revoke_quietly(lease_id, token, end)
                raise _Impossible("the credentials answer is malformed") from None

        return self._call(
            read, operation=f"read database credentials for role {role!r}", method="GET",
            path=path, retry_if=_retry_unsent_only, deadline=deadline, role=role,
            hint=f"that the database secrets engine is mounted at {mount!r}, role {role!r} "
            f"exists, and the policy grants 'read' on {path}")

    def _revoke_quietly(self, lease_id: str, token: Secret | None, deadline: float) -> None:
        try:
            self._request("PUT", "sys/leases/revoke", {"lease_id": lease_id, "sync": True},
                          token=token, deadline=deadline)
            logger.warning("revoked lease %s: Vault's answer creating it was unusable", lease_id)
        except Exception as exc:  # best effort; the lease dies with its token or its TTL
            logger.warning("could not revoke lease %s from an unusable answer (%s)", lease_id,
                           type(exc).__name__)

    def read_static(self, mount: str, role: str, token: Secret | None = None, *,
                    deadline: float | None = None) -> StaticSecret:
        path = f"{mount}/static-creds/{role}"

        def read(end: float) -> StaticSecret:
            d = self._request("GET", path, token=token, deadline=end)["data"]
            return StaticSecret(username=_text(d.get("username"), "username"),
                                password=_text(d.get("password"), "password"),
                                ttl=_seconds(d.get("ttl") or 0, "ttl"))

        return self._call(
            read, operation=f"read static database credentials for role {role!r}",
            method="GET", path=path, deadline=deadline, role=role,
            hint=f"that static role {role!r} exists under the {mount!r} mount and the policy "
            f"grants 'read' on {path}")

    def renew_lease(self, lease_id: str, increment: int, token: Secret | None = None, *,
                    deadline: float | None = None, role: str | None = None,
                    generation: int | None = None) -> Renewal:
        def renew(end: float) -> Renewal:
            data = self._request("PUT", "sys/leases/renew",
                                 {"lease_id": lease_id, "increment": increment}, token=token,
                                 deadline=end)
            return Renewal(ttl=_seconds(data.get("lease_duration"), "lease_duration"),
                           warnings=_warnings(data))

        return self._call(renew, operation="renew the database lease", method="PUT",
                          path="sys/leases/renew", deadline=deadline, role=role,
                          generation=generation,
                          hint="the policy grants 'update' on sys/leases/renew")

    def revoke_lease(self, lease_id: str, token: Secret | None = None, *,
                     deadline: float | None = None, attempts: int | None = None,
                     role: str | None = None, generation: int | None = None) -> None:
        """Revoke synchronously, so the database user is gone when this returns."""
        self._call(
            lambda end: self._request("PUT", "sys/leases/revoke",
                                      {"lease_id": lease_id, "sync": True}, token=token,
                                      deadline=end),
            operation="revoke the database lease", method="PUT", path="sys/leases/revoke",
            hint="the policy grants 'update' on sys/leases/revoke", deadline=deadline,
            attempts=attempts, role=role, generation=generation)

    def capabilities(self, paths: list[str], token: Secret | None = None) -> dict[str, list[str]]:
        """The token's capabilities on ``paths`` (for preflight checks)."""
        data = self._call(
            lambda end: self._request("POST", "sys/capabilities-self", {"paths": paths},
                                      token=token, deadline=end),
            operation="read token capabilities", method="POST", path="sys/capabilities-self",
            deadline=None)
        body = data.get("data", data)
        return {p: list(body.get(p, [])) for p in paths}

    def health(self, *, deadline: float | None = None) -> Health:
        """``sys/health`` (unauthenticated), answered with 200 whatever the node's state."""
        params = {"standbyok": "true", "sealedcode": "200", "uninitcode": "200",
                  "perfstandbyok": "true", "drsecondarycode": "200"}

        def read(end: float) -> Health:
            d = self._request("GET", "sys/health", params=params, deadline=end)
            return Health(initialized=bool(d.get("initialized")), sealed=bool(d.get("sealed")),
                          standby=bool(d.get("standby")), version=str(d.get("version") or "?"))

        return self._call(read, operation="read Vault's health", method="GET", path="sys/health",
                          deadline=deadline)


def _warnings(data: dict[str, Any]) -> tuple[str, ...]:
    """Vault's ``warnings`` (a capped renewal says so there): logged, never dropped."""
    found = tuple(str(w) for w in (data.get("warnings") or ()))
    for warning in found:
        logger.info("Vault warning: %s", warning)
    return found
