"""CredentialProvider: the public face of vaultdb.

The constructor only checks settings (and, on the main thread, installs the SIGTERM handler
when SIGTERM is unhandled): no network, no thread. The first :meth:`credentials`
call (or :meth:`start`) logs in, fetches credentials and starts the background renewer. After
that, :meth:`credentials` returns an immutable snapshot without touching Vault or a lock,
which is what connection factories call for every new connection.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import TypeVar

from . import _process, settings
from . import events as ev
from ._clock import SYSTEM_CLOCK, Clock
from ._engine import LeaseEngine
from ._http import Exchange
from ._renewer import Renewer
from ._schedule import SchedulePolicy
from ._session import LoginSession
from .auth import AuthMethod
from .credentials import Credentials
from .errors import ConfigurationError, ProviderClosedError, VaultDBError

__all__ = ["CredentialProvider", "ProviderState", "ProviderStatus"]

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=ev.LeaseEvent)
Listener = Callable[[ev.LeaseEvent], None]


class ProviderState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True)
class ProviderStatus:
    """A snapshot for health checks and metrics; contains no secret."""

    role: str
    state: str
    healthy: bool
    generation: int | None
    username: str | None
    lease_id: str | None
    lease_seconds_left: float | None
    token_seconds_left: float | None
    logins: int
    renewals: int
    rotations: int
    revocations: int
    errors: int
    last_error: str | None
    last_error_at: datetime | None


class CredentialProvider:
    """Dynamic (or static) database credentials from Vault, kept valid in the background.

    :param role: database secrets engine role (``<mount>/creds/<role>``).
    :param auth: login method; ``None`` picks one from the environment.
    :param vault_addr: defaults to ``$VAULT_ADDR`` (or ``$BAO_ADDR``).
    :param mount: mount path of the database secrets engine.
    :param static: ``True`` for a static role (``<mount>/static-creds/<role>``).
    :param drain_seconds: how long rotated-out credentials stay valid before they are revoked,
        so pools can replace their connections (capped at a third of the lease TTL).
    :param fetch_timeout: the longest :meth:`credentials` blocks when it has to fetch.
    :param request_timeout: timeout of each Vault HTTP request.
    :param revoke_timeout: the longest :meth:`close` spends revoking (well inside the 30 s
        Kubernetes grace period).
    :param handle_sigterm: install a revoke-then-exit SIGTERM handler when SIGTERM is otherwise
        unhandled (never replaces a server's own handler).
    :param rotate_after: rotate dynamic credentials once they are this many seconds old, even
        when Vault would renew them further, so the life left before ``max_ttl`` is always a
        buffer against a Vault outage (``None``: rotate only before ``max_ttl`` or the token's
        end).
    :param session: a :class:`~vaultdb.LoginSession` shared with other providers (one login
        and one token renewal for several roles or databases); its settings then replace
        ``auth``, ``vault_addr``, ``namespace``, ``verify`` and ``request_timeout``. Without
        one the provider logs in on its own.
    """

    def __init__(
        self,
        role: str,
        *,
        auth: AuthMethod | None = None,
        vault_addr: str | None = None,
        mount: str = "database",
        static: bool = False,
        namespace: str | None = None,
        verify: bool | str | None = None,
        drain_seconds: float = 30.0,
        fetch_timeout: float = 10.0,
        request_timeout: float | None = None,
        revoke_timeout: float = 10.0,
        renew_fraction: float = 2 / 3,
        jitter: float = 0.1,
        handle_sigterm: bool = True,
        session: LoginSession | None = None,
        rotate_after: float | None = None,
        _clock: Clock = SYSTEM_CLOCK,
        _exchange: Exchange | None = None,
        _rng: random.Random | None = None,
    ) -> None:
        if not role or "/" in role:
            raise ConfigurationError(f"Invalid database role name {role!r}.",
                                     hint="the role name as in <mount>/creds/<role>")
        mount = mount.strip("/")
        if not mount:
            raise ConfigurationError("The secrets engine mount is empty.", hint="mount=...")
        if rotate_after is not None and not rotate_after > 0:
            raise ConfigurationError(f"rotate_after={rotate_after!r} must be a positive number "
                                     "of seconds.", hint="rotate_after / VAULTDB_ROTATE_AFTER")
        self.role = role
        self.mount = mount
        self.static = static
        self.fetch_timeout = fetch_timeout
        self.revoke_timeout = revoke_timeout
        self.handle_sigterm = handle_sigterm
        if session is None:
            session = LoginSession(auth, vault_addr=vault_addr, namespace=namespace,
                                   verify=verify, request_timeout=request_timeout,
                                   renew_fraction=renew_fraction, jitter=jitter, _clock=_clock,
                                   _exchange=_exchange, _rng=_rng)
        self.session = session
        self.auth = session.auth
        self._policy = SchedulePolicy(renew_fraction=renew_fraction, jitter=jitter,
                                      drain_seconds=drain_seconds)
        # The first listener wakes the renewer so it plans around credentials fetched on a
        # caller's thread.
        self._listeners: list[tuple[Listener, tuple[type[ev.LeaseEvent], ...]]] = [
            (lambda _event: self._wake(), (ev.LeaseCreated,)),
        ]
        # The clock, the transport and the randomness are injected by the lifetime simulation
        # (vaultdb.testing.sim); applications leave them alone.
        self._clock = _clock = session.clock
        self._now = _clock.monotonic
        self._engine = LeaseEngine(role=role, mount=mount, static=static, session=session,
                                   policy=self._policy, retry=session.vault.retry, clock=_clock,
                                   emit=self._dispatch, rng=session.rng,
                                   request_timeout=session.vault.settings.timeout,
                                   rotate_after=rotate_after)
        self._state = ProviderState.NEW
        self._start_lock = threading.RLock()
        self._renewer: Renewer | None = None
        self._owner_pid = os.getpid()
        if handle_sigterm:
            # Now, while we are most likely on the main thread: the first credentials() call
            # may come from a worker thread, where a signal handler cannot be installed.
            _process.install_sigterm_handler()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object
                 ) -> CredentialProvider:
        """Build a provider from ``VAULT_*`` / ``BAO_*`` and ``VAULTDB_*`` variables.

        Keyword arguments override the environment. See :data:`vaultdb.settings.ENVIRONMENT`.
        """
        e = settings.environ() if env is None else env
        with settings.scoped(e):  # what the constructor fills in comes from ``e`` too
            return cls(**settings.provider_kwargs(e, overrides))

    # -- the hot path -----------------------------------------------------------------------

    def credentials(self, timeout: float | None = None) -> Credentials:
        """Current valid credentials. No Vault call while they are valid.

        Blocks (up to ``timeout``, default ``fetch_timeout``) only for the first fetch or when
        the current credentials have run out. Raises a :class:`~vaultdb.VaultDBError`
        subclass when nothing valid can be had.
        """
        current = self._engine.current
        if current is not None and current.deadline > self._now():
            return current
        return self._credentials_slow(self.fetch_timeout if timeout is None else timeout)

    def _credentials_slow(self, timeout: float) -> Credentials:
        self._check_open()
        self._check_fork()
        creds = self._engine.obtain(self._now() + timeout)
        self._ensure_running()
        return creds

    @property
    def generation(self) -> int | None:
        """Generation of the current credentials, or ``None`` before the first fetch."""
        current = self._engine.current
        return current.generation if current is not None else None

    def is_current(self, generation: int | None) -> bool:
        """Whether a connection opened with ``generation`` may stay in a pool."""
        current = self._engine.current
        return current is None or generation == current.generation

    def refresh(self, failed: Credentials | None = None, timeout: float | None = None
                ) -> Credentials:
        """Get new credentials because ``failed`` stopped working (e.g. the role was dropped).

        If the credentials were already replaced, returns the current ones without a Vault call;
        concurrent callers share one fetch.
        """
        self._check_open()
        self._check_fork()
        wait = self.fetch_timeout if timeout is None else timeout
        creds = self._engine.refresh(failed, self._now() + wait)
        self._ensure_running()
        return creds

    def start(self, *, wait: bool = True) -> CredentialProvider:
        """Fetch credentials now and start the renewer (otherwise done on first use).

        ``wait=False`` returns at once and fetches on a background thread, so the login and
        the credentials read overlap with whatever the process does next (importing the rest
        of the app, building its engine). The first :meth:`credentials` call then waits only
        for what is left of that fetch. A failure is logged, never lost: that call retries and
        raises the typed error itself.
        """
        if wait:
            self.credentials()
            return self
        self._check_open()
        self._clock.start_thread(f"vaultdb-{self.role}-prefetch", self._prefetch)
        return self

    def _prefetch(self) -> None:
        try:
            self.credentials()
        except ProviderClosedError:
            pass
        except VaultDBError as exc:
            logger.warning("vaultdb: fetching credentials for role %r in the background failed "
                           "(%s); the first credentials() call retries", self.role, exc)

    # -- events and status ------------------------------------------------------------------

    def subscribe(self, listener: Callable[[E], None], *event_types: type[E]
                  ) -> Callable[[], None]:
        """Call ``listener`` for each event of ``event_types`` (all events if none given).

        Returns a function that unsubscribes. See :mod:`vaultdb.events` for threads.
        """
        entry = (listener, tuple(event_types) or (ev.LeaseEvent,))
        self._listeners.append(entry)  # type: ignore[arg-type]

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)  # type: ignore[arg-type]

        return unsubscribe

    def _dispatch(self, event: ev.LeaseEvent) -> None:
        for listener, types in list(self._listeners):
            if isinstance(event, types):
                try:
                    listener(event)
                except Exception:
                    logger.exception("vaultdb event listener %r raised on %s; skipped",
                                     listener, type(event).__name__)

    def status(self) -> ProviderStatus:
        """A snapshot for readiness/liveness probes and metrics."""
        engine = self._engine
        creds, token, c = engine.current, engine.session.token, engine.counters
        now = self._now()
        error, error_at = engine.trouble.last_error, engine.trouble.last_error_at
        return ProviderStatus(
            role=self.role,
            state=self._state.value,
            healthy=creds is not None and creds.is_valid(now),
            generation=creds.generation if creds else None,
            username=creds.username if creds else None,
            lease_id=creds.lease_id if creds else None,
            lease_seconds_left=creds.seconds_left(now) if creds else None,
            token_seconds_left=token.seconds_left(now) if token else None,
            logins=engine.session.logins, renewals=c.renewals, rotations=c.rotations,
            revocations=c.revocations, errors=engine.trouble.count,
            last_error=str(error) if error else None,
            last_error_at=(datetime.fromtimestamp(error_at, timezone.utc)
                           if error_at else None),
        )

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def state(self) -> ProviderState:
        return self._state

    def _check_open(self) -> None:
        if self._state is ProviderState.CLOSED:
            raise ProviderClosedError(f"The provider for role {self.role!r} is closed.",
                                      hint="create a new CredentialProvider")

    def _check_fork(self) -> None:
        if self._owner_pid != os.getpid():
            self._after_fork_in_child()

    def _ensure_running(self) -> None:
        if self._renewer is not None:
            return
        with self._start_lock:
            if self._renewer is not None or self._state is ProviderState.CLOSED:
                return
            self._renewer = Renewer(f"vaultdb-{self.role}-renewer", self._engine.step,
                                    self._clock)
            self._renewer.start()
            self._state = ProviderState.RUNNING
            _process.register(self, handle_sigterm=self.handle_sigterm)

    def _wake(self) -> None:
        if self._renewer is not None:
            self._renewer.wake()

    def close(self, timeout: float | None = None) -> None:
        """Stop renewing and revoke what this process holds. Idempotent; bounded in time.

        A forked child never revokes its parent's leases: it only revokes its own.
        """
        budget = self.revoke_timeout if timeout is None else timeout
        self._close_by(self._now() + max(0.0, budget))

    def _close_by(self, deadline: float) -> None:
        """:meth:`close` with an absolute deadline (``close_all`` shares one across providers)."""
        with self._start_lock:
            if self._state is ProviderState.CLOSED:
                return
            self._state = ProviderState.CLOSED
            renewer, self._renewer = self._renewer, None
        _process.unregister(self)
        if renewer is not None:
            # Not waiting long: the engine's lock is what shutdown waits for, by the deadline.
            renewer.stop(timeout=max(0.0, min(1.0, deadline - self._now())))
        if self._owner_pid != os.getpid():
            return
        self._engine.shutdown(deadline)
        logger.info("vaultdb provider for role %r closed", self.role)

    def _after_fork_in_child(self) -> None:
        """Called in a forked child: drop the parent's leases, token, thread and locks."""
        self._owner_pid = os.getpid()
        self._start_lock = threading.RLock()
        self._renewer = None
        self._engine.reset_after_fork()
        if self._state is ProviderState.RUNNING:
            self._state = ProviderState.NEW

    def __enter__(self) -> CredentialProvider:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<CredentialProvider role={self.role!r} mount={self.mount!r} "
                f"static={self.static} state={self._state.value} generation={self.generation}>")
