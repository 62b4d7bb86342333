"""``vaultdb check``: a step-by-step preflight, run with the application's own environment.

Each step prints one ``ok``/``FAIL``/``warn``/``skip`` line and, for a failure or warning, a
concrete hint written as a sentence. A step whose prerequisite failed is skipped. Warnings that
vaultdb logs meanwhile (Vault calls being retried) are printed as notes under their step, never
in the middle of the report.

Everything the check creates (a login token, one set of credentials) is revoked before it
exits, on every path: a failed step, an unexpected error, SIGINT, SIGTERM or SIGHUP (a closed
``kubectl exec`` session), which stop the check and still clean up (exit 128+N). The probe
lease is renewed only by what the settings questions need (see :meth:`Checker._lease_increment`),
so a lease the check cannot revoke (a token handed in without ``update`` on
``sys/leases/revoke``) ends soon by itself. Exit status: 0 when no step failed (warnings
allowed unless ``--strict``), 1 when a step failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..auth import (
    AuthMethod,
    JWTAuth,
    KubernetesAuth,
    TokenAuth,
    auth_from_env,
    jwt_claims,
    jwt_expiry,
)
from ..errors import ConfigurationError, LeaseNotFoundError, VaultDBError
from ..settings import env_bool, env_float
from . import hint_sentence
from ._steplog import HeldWarnings

__all__ = ["CheckResult", "add_parser", "run"]

logger = logging.getLogger("vaultdb.cli.check")

EXIT_OK = 0
EXIT_FAILED = 1

#: Vault's system default lease TTL (768 h): what a role without a TTL hands out.
SYSTEM_DEFAULT_TTL = 768 * 3600
#: Increment asked for when probing how far the check's own login token can be renewed (the
#: token is revoked at the end, taking its leases with it).
PROBE_INCREMENT = SYSTEM_DEFAULT_TTL
#: The probe lease is never renewed by less than this (so it outlives the revocation step).
LEASE_PROBE_FLOOR = 10.0
#: Signals that stop the check; it cleans up first (a second one waits for the cleanup).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"


@dataclass
class CheckResult:
    name: str
    status: str
    summary: str
    hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "check", parents=[common],
        help="preflight: Vault, login, policy, credentials, database, renewal, revocation",
        description="Check, step by step, that this environment can get, use, renew and revoke "
        "database credentials. Run it where the app runs (kubectl exec ... -- vaultdb check), "
        "with the same environment. Everything it creates is revoked, also when a signal "
        "stops it. Exit status: 0 passed, 1 a check failed, 2 usage error, 128+N stopped by "
        "signal N.")
    p.add_argument("--role", help="database role (default: $VAULTDB_ROLE)")
    p.add_argument("--mount", help="database secrets engine mount (default: $VAULTDB_MOUNT or "
                   "'database')")
    p.add_argument("--dsn", help="also connect to the database with the issued credentials and "
                   "run SELECT current_user (libpq URL or key=value string, without credentials)")
    p.add_argument("--json", action="store_true", help="print one JSON document for machines")
    p.add_argument("--strict", action="store_true", help="treat warnings as failures")
    p.set_defaults(run=run)


class _Stopped(BaseException):
    """Raised by a stop signal's handler to unwind the steps (never caught by them)."""


def _stop_on_signals(checker: Checker) -> dict[int, Any]:
    """Turn SIGINT/SIGTERM/SIGHUP into an unwind through :meth:`Checker.run`'s cleanup."""

    def stop(signum: int, frame: Any) -> None:
        if checker.stop_signal is None:
            checker.stop_signal = signum
            if not checker.cleaning:
                raise _Stopped
        # A second signal, or one during the cleanup, waits for the cleanup to end.

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}


def run(args: argparse.Namespace) -> int:
    checker = Checker(role=args.role, mount=args.mount, dsn=args.dsn,
                      echo=None if args.json else _print_result)
    if not args.json:
        print(f"vaultdb check ({checker.describe_target()})", flush=True)
    previous = _stop_on_signals(checker)
    try:
        results = checker.run()
    except _Stopped:
        results = checker.results  # cleaned up on the way out of run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [r for r in results if r.status == FAIL or (args.strict and r.status == WARN)]
    code = EXIT_FAILED if failed else EXIT_OK
    if checker.stop_signal is not None:
        name = signal.Signals(checker.stop_signal).name
        print(f"vaultdb check: stopped by {name}; cleaned up (see the cleanup line)",
              file=sys.stderr, flush=True)
        code = 128 + checker.stop_signal
    if args.json:
        doc = {"ok": not failed, "exit_code": code, "role": checker.role,
               "vault_addr": checker.vault_addr, "checks": [asdict(r) for r in results]}
        print(json.dumps(doc, indent=2, default=str))
    else:
        warned = sum(r.status == WARN for r in results)
        failures = sum(r.status == FAIL for r in results)
        verdict = "FAILED" if failed else "passed"
        print(f"check {verdict}: {failures} failed, {warned} warning(s), "
              f"{sum(r.status == OK for r in results)} ok")
    return code


def _print_result(result: CheckResult) -> None:
    print(f"  [{result.status:^4}] {result.name:<12} {result.summary}", flush=True)
    if result.hint:
        print(f"  {'':<6} {'':<12} hint: {result.hint}", flush=True)
    for note in result.details.get("log", ()):
        print(f"  {'':<6} {'':<12} note: {note}", flush=True)


class Checker:
    """Runs the steps in order; every Vault call goes through :class:`VaultClient`."""

    def __init__(self, *, role: str | None, mount: str | None, dsn: str | None,
                 echo: Any = None, env: dict[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.role = role or self.env.get("VAULTDB_ROLE") or ""
        self.mount = (mount or self.env.get("VAULTDB_MOUNT") or "database").strip("/")
        self.dsn = dsn
        self.vault_addr = self.env.get("VAULT_ADDR") or self.env.get("BAO_ADDR") or ""
        self.results: list[CheckResult] = []
        self._echo = echo
        self.static = False
        self.drain = 30.0
        self.auth: AuthMethod | None = None
        self.client: Any = None  # VaultClient once configured
        self.owned_token: str | None = None
        self.policies: tuple[str, ...] = ()
        self.token_ttl: float | None = None
        self.token_max: float | None = None
        self.lease_id: str | None = None
        self.lease_issued_at = 0.0
        self.lease_ttl = 0.0
        self.lease_max: float | None = None  # known when the probe renewal was capped
        self.lease_at_least = 0.0
        self.username: str | None = None
        self._password: str | None = None
        self.stop_signal: int | None = None
        self.cleaning = False
        self._reading = False  # a credentials request is in flight
        self._log = HeldWarnings()

    def describe_target(self) -> str:
        return f"role {self.role or '?'!r}, Vault {self.vault_addr or '?'}"

    def _add(self, name: str, status: str, summary: str, hint: str | None = None,
             **details: Any) -> CheckResult:
        held = self._log.take()
        if held:
            details["log"] = held
        result = CheckResult(name, status, summary, hint_sentence(hint) if hint else None,
                             details)
        self.results.append(result)
        if self._echo is not None:
            self._echo(result)
        return result

    def _fail(self, name: str, exc: VaultDBError, prefix: str = "") -> None:
        from . import error_lines

        lines = error_lines(exc)
        self._add(name, FAIL, prefix + lines[0], exc.hint, error=type(exc).__name__,
                  status_code=exc.status)

    def _skip(self, *names: str) -> None:
        for name in names:
            self._add(name, SKIP, "skipped: an earlier step failed")

    # -- the steps ------------------------------------------------------------------------

    def run(self) -> list[CheckResult]:
        steps = ["config", "vault", "auth", "policy", "credentials", "database", "renewal",
                 "revocation"]
        with self._log:
            try:
                for i, step in enumerate(steps):
                    if not getattr(self, f"_step_{step}")():
                        self._skip(*(s for s in steps[i + 1:] if s != "database" or self.dsn))
                        break
                else:
                    self._step_settings()
            finally:
                self.cleaning = True
                self._cleanup()
        return self.results

    def _step_config(self) -> bool:
        from .._vault import VaultClient, VaultSettings

        try:
            if not self.role:
                raise ConfigurationError("No database role is configured.",
                                         hint="set VAULTDB_ROLE or pass --role")
            self.static = env_bool(self.env, "VAULTDB_STATIC", False)
            self.drain = env_float(self.env, "VAULTDB_DRAIN_SECONDS", 30.0)
            settings = VaultSettings.resolve(self.vault_addr or None)
            self.auth = auth_from_env(self.env)
        except VaultDBError as exc:
            self._fail("config", exc)
            return False
        self.vault_addr = settings.addr
        self.client = VaultClient(settings)
        kind = "static-creds" if self.static else "creds"
        self._add("config", OK, f"role {self.role!r} at {self.mount}/{kind}, "
                  f"{self.auth.describe()}", role=self.role, mount=self.mount,
                  static=self.static, drain_seconds=self.drain, auth=self.auth.method)
        return True

    def _step_vault(self) -> bool:
        settings = self.client.settings
        try:
            health = self.client.health()
        except VaultDBError as exc:
            self._fail("vault", exc)
            return False
        if not health.initialized or health.sealed:
            self._add("vault", FAIL, f"{settings.addr} is "
                      f"{'sealed' if health.sealed else 'not initialized'}",
                      "unseal Vault (or initialize it) before anything can log in")
            return False
        role = "standby (requests are forwarded)" if health.standby else "active"
        if settings.addr.startswith("https://"):
            tls = ("TLS verified with VAULT_CACERT" if isinstance(settings.verify, str)
                   else "TLS NOT verified" if settings.verify is False else "TLS verified")
        else:
            tls = "plain HTTP"
        self._add("vault", OK, f"{settings.addr} reachable: version {health.version}, {role}, "
                  f"{tls}", version=health.version, standby=health.standby)
        host = settings.addr.split("://", 1)[1].split("/")[0].rsplit(":", 1)[0]
        if settings.addr.startswith("http://") and host not in ("127.0.0.1", "localhost",
                                                                "[::1]"):
            self._add("tls", WARN, "Vault is reached over plain HTTP: tokens and database "
                      "passwords cross the network unencrypted",
                      "use an https:// VAULT_ADDR (and VAULT_CACERT for a private CA)")
        elif settings.verify is False:
            self._add("tls", WARN, "VAULT_SKIP_VERIFY is set: Vault's certificate is not checked",
                      "set VAULT_CACERT to the CA that signed Vault's certificate instead")
        return True

    def _token_file_summary(self, auth: AuthMethod) -> str:
        path = getattr(auth, "token_path", None)
        if not isinstance(auth, (KubernetesAuth, JWTAuth)) or not path:
            return ""
        payload = auth.login_payload()  # reads and validates the file (never printed)
        jwt = payload["jwt"]
        claims = jwt_claims(jwt)
        exp = jwt_expiry(jwt)
        left = f", expires in {_duration(exp - time.time())}" if exp else ", no expiry"
        aud = claims.get("aud")
        aud_text = ",".join(aud) if isinstance(aud, list) else str(aud or "-")
        return f"; token file {path} readable ({claims.get('sub', '?')}, audience {aud_text}{left})"

    def _step_auth(self) -> bool:
        assert self.auth is not None
        try:
            files = self._token_file_summary(self.auth)
            login = self.client.login(self.auth)
        except VaultDBError as exc:
            self._fail("auth", exc)
            return False
        if login.owned:
            self.owned_token = login.token
        self.token_ttl = login.ttl
        try:
            info = self.client.lookup_self()
            policies: tuple[str, ...] = info.policies
        except VaultDBError:
            info, policies = None, ()
        self.policies = policies
        ttl_text = _duration(login.ttl) if login.ttl > 0 else "no expiry"
        self._add("auth", OK, f"logged in with {self.auth.describe()}{files}; token ttl "
                  f"{ttl_text}, {'renewable' if login.renewable else 'NOT renewable'}, "
                  f"policies {', '.join(policies) or '?'}", token_ttl=login.ttl,
                  renewable=login.renewable, policies=list(policies))
        self.token_max = self._probe_token_lifetime(login.renewable, login.ttl, info)
        return True

    def _probe_token_lifetime(self, renewable: bool, ttl: float, info: Any) -> float | None:
        """How long the login token can live at most (``None``: practically unbounded)."""
        if ttl <= 0:
            return None
        if not renewable:
            return ttl
        if self.owned_token is None:
            # A token handed in is not ours to renew; its lookup tells its explicit max.
            return (info.explicit_max_ttl or None) if info is not None else None
        try:
            granted = self.client.renew_self(PROBE_INCREMENT).ttl
        except VaultDBError:
            return None
        return granted if granted + 1 < PROBE_INCREMENT else None

    def _step_policy(self) -> bool:
        kind = "static-creds" if self.static else "creds"
        need = {f"{self.mount}/{kind}/{self.role}": "read"}
        if not self.static:
            need.update({"sys/leases/renew": "update", "sys/leases/revoke": "update"})
        try:
            caps = self.client.capabilities(list(need))
        except VaultDBError as exc:
            self._add("policy", WARN, f"could not read the token's capabilities ({exc.message})",
                      "Nothing to do if the default policy is attached (it grants update on "
                      "sys/capabilities-self); the next steps test the capabilities for real.")
            return True
        missing = {p: c for p, c in need.items()
                   if not ({c, "root", "sudo"} & set(caps.get(p, ()))) or "deny" in caps.get(p, ())}
        if missing:
            hcl = " ".join(f'path "{p}" {{ capabilities = ["{c}"] }}' for p, c in missing.items())
            where = (f"one of the token's policies ({', '.join(self.policies)})"
                     if self.policies else "the policy attached to this login")
            self._add("policy", FAIL, "missing " + ", ".join(f"{c!r} on {p}"
                                                             for p, c in missing.items()),
                      f"add to {where}: {hcl}", missing=missing, capabilities=caps)
            # Without read nothing can be issued; without renew/revoke the next steps show it.
            return f"{self.mount}/{kind}/{self.role}" not in missing
        self._add("policy", OK, "token may " + ", ".join(f"{c} {p}" for p, c in need.items()),
                  capabilities=caps)
        return True

    def _step_credentials(self) -> bool:
        try:
            if self.static:
                s = self.client.read_static(self.mount, self.role)
                self.username, self._password, self.lease_ttl = s.username, s.password, s.ttl
                self._add("credentials", OK, f"static user {s.username!r}, password rotates in "
                          f"{_duration(s.ttl)}", username=s.username, ttl=s.ttl)
                return True
            self._reading = True
            d = self.client.read_dynamic(self.mount, self.role)
        except VaultDBError as exc:
            self._fail("credentials", exc)
            return False
        finally:
            if self.stop_signal is None:
                self._reading = False
        self.lease_id, self.lease_issued_at = d.lease_id, time.monotonic()
        self.username, self._password, self.lease_ttl = d.username, d.password, d.lease_duration
        renewable = "renewable" if d.renewable else "NOT renewable"
        self._add("credentials", OK, f"issued user {d.username!r}, lease "
                  f"{_duration(d.lease_duration)}, {renewable}",
                  username=d.username, lease_duration=d.lease_duration, renewable=d.renewable)
        if not d.renewable:
            self._add("renewable", WARN, "the lease is not renewable: every lease ends after its "
                      "TTL and vaultdb rotates each time",
                      "Check the mount's tuning: a database role's leases are normally renewable.")
        return True

    def _step_database(self) -> bool:
        if not self.dsn:
            return True
        try:
            import psycopg
        except ImportError:
            self._add("database", FAIL, "psycopg is not installed, so --dsn cannot be tested",
                      "Install it: pip install 'vaultdb-creds[psycopg]'")
            return True
        conninfo = _conninfo(self.dsn)
        try:
            with psycopg.connect(conninfo, user=self.username, password=self._password,
                                 connect_timeout=5, autocommit=True) as conn:
                row = conn.execute("SELECT current_user, session_user").fetchone()
        except psycopg.Error as exc:
            self._add("database", FAIL, f"could not connect or query: {_first_line(exc)}",
                      "the host and port in --dsn and the network path to the database; that "
                      "the role's creation statements grant LOGIN and CONNECT on the database; "
                      "pg_hba.conf allows this client")
            return True
        current, session = row if row else ("?", "?")
        self._add("database", OK, f"connected: SELECT current_user -> {current!r} (session "
                  f"user {session!r})", current_user=current, session_user=session)
        return True

    def _step_renewal(self) -> bool:
        if self.static or self.lease_id is None:
            self._add("renewal", SKIP, "static role: Vault rotates the password, nothing to renew")
            return True
        increment = self._lease_increment()
        try:
            renewal = self.client.renew_lease(self.lease_id, increment)
        except VaultDBError as exc:
            self._fail("renewal", exc)
            return True
        age = time.monotonic() - self.lease_issued_at
        self.lease_at_least = age + renewal.ttl
        capped = renewal.ttl + 1 < increment
        self.lease_max = self.lease_at_least if capped else None
        cap_text = (f"the role's max_ttl ends the lease after about {_duration(age + renewal.ttl)}"
                    if capped else f"no max_ttl cap within {_duration(increment)}")
        self._add("renewal", OK, f"renewed by {_duration(increment)}: {cap_text}",
                  increment=increment, granted=renewal.ttl, lease_max=self.lease_max)
        return True

    def _lease_increment(self) -> int:
        """Renew the probe lease by just what the settings questions need, never more.

        A max_ttl shorter than three drain windows needs ``3 * drain``; a lease outliving the
        login token needs the token's lifetime, asked only for the check's own token: Vault
        revokes the lease with that token anyway, so asking adds no life to it. A lease the
        check cannot revoke (a token handed in, revocation denied) thus ends within about
        ``3 * drain`` seconds, not at the role's max_ttl.
        """
        need = max(3 * self.drain + 1, LEASE_PROBE_FLOOR)
        if self.owned_token is not None and self.token_max is not None:
            need = max(need, self.token_max + 2)
        return round(need)  # Vault wants whole seconds

    def _step_revocation(self) -> bool:
        if self.lease_id is None:
            self._add("revocation", SKIP, "static role: nothing to revoke")
            return True
        try:
            self.client.revoke_lease(self.lease_id)
        except LeaseNotFoundError:
            self.lease_id = None
            self._add("revocation", OK, "the lease was already gone")
            return True
        except VaultDBError as exc:
            self._fail("revocation", exc)
            return True
        self.lease_id = None
        gone = self._old_credentials_refused()
        self._add("revocation", OK, f"revoked; the user {self.username!r} "
                  + ("can no longer log in" if gone else "is gone"))
        return True

    def _old_credentials_refused(self) -> bool:
        if not self.dsn:
            return False
        try:
            import psycopg

            with psycopg.connect(_conninfo(self.dsn), user=self.username,
                                 password=self._password, connect_timeout=5):
                pass
        except Exception:
            return True
        return False

    def _step_settings(self) -> None:
        lease_max, token_max = self.lease_max, self.token_max
        # A lease nobody renews (a crashed pod's) lives its default TTL: that is what to warn on.
        if self.lease_ttl >= SYSTEM_DEFAULT_TTL * 0.99:
            self._add("ttl", WARN, "leases last 32 days (Vault's default): the role sets no "
                      "default_ttl/max_ttl, so a user left behind by a crashed pod stays a month",
                      f"set default_ttl (e.g. 1h) and max_ttl (e.g. 24h) on "
                      f"{self.mount}/roles/{self.role}")
        lease_reach = lease_max if lease_max is not None else self.lease_at_least
        if token_max is not None and lease_reach and token_max + 1 < lease_reach:
            allows = (f"allows {_duration(lease_reach)}" if lease_max is not None
                      else f"allows at least {_duration(lease_reach)}")
            self._add("token", WARN, f"a lease can outlive the login token: the token ends "
                      f"after about {_duration(token_max)}, the lease's max_ttl {allows}; "
                      "Vault revokes leases with their token, so "
                      "credentials end early (vaultdb logs in again and rotates before that)",
                      "raise token_max_ttl (or token_ttl) of the auth role to at least the "
                      "database role's max_ttl, or lower max_ttl")
        if lease_max is not None and lease_max < 3 * self.drain:
            self._add("drain", WARN, f"max_ttl (about {_duration(lease_max)}) is short for the "
                      f"{_duration(self.drain)} drain window: rotated credentials are revoked "
                      "before pools can replace their connections (the drain is cut to a third "
                      "of the lease)",
                      "raise the role's max_ttl to several times VAULTDB_DRAIN_SECONDS, or lower "
                      "VAULTDB_DRAIN_SECONDS")
        if not any(r.status == WARN for r in self.results):
            self._add("settings", OK, "no risky lease or token settings found")

    def _cleanup(self) -> None:
        """Revoke whatever is left, on every path, and say so in one ``cleanup`` line.

        The lease (if a step failed or was cut short) is revoked first, then the check's own
        login token, which takes with it any lease still left, even one whose request was cut
        off by a signal. A token handed in is never revoked.
        """
        if self.client is None or not (self.owned_token or self.lease_id or self._reading):
            return  # nothing was created
        done: list[str] = []
        left: list[str] = []
        lease_error: VaultDBError | None = None
        if self.lease_id is not None:
            try:
                self.client.revoke_lease(self.lease_id)
                self.lease_id = None
                done.append("the lease")
            except LeaseNotFoundError:
                self.lease_id = None
            except VaultDBError as exc:
                lease_error = exc
        if self.owned_token is not None:
            try:
                self.client.revoke_token(self.owned_token)
                done.append("the login token" + (" (and the lease with it)"
                                                 if self.lease_id or self._reading else ""))
                self.lease_id, self._reading = None, False
            except VaultDBError as exc:
                left.append(f"the login token could not be revoked ({exc.message}); it ends at "
                            "its TTL")
            self.owned_token = None
        if self.lease_id is not None:
            why = f" ({lease_error.message})" if lease_error else ""
            left.append(f"the lease could not be revoked{why}; it ends within about "
                        f"{_duration(self._lease_left())}")
        if self._reading:
            left.append("a credentials request was cut off: a lease it created ends at the "
                        "role's default TTL")
        if isinstance(self.auth, TokenAuth):
            done.append("not the token: it was handed in")
        if left:
            self._add("cleanup", WARN, "; ".join(left),
                      "revoke it by hand (bao lease revoke -prefix <mount>/creds/<role>) or let "
                      "it expire; the policy needs update on sys/leases/revoke")
        else:
            self._add("cleanup", OK, "revoked " + ", ".join(done) if done
                      else "nothing left to revoke")

    def _lease_left(self) -> float:
        """Seconds the probe lease has left at most, from what Vault last granted."""
        granted = self.lease_at_least or self.lease_ttl
        return max(0.0, granted - (time.monotonic() - self.lease_issued_at))


def _conninfo(dsn: str) -> str:
    """Accept SQLAlchemy-style URLs too (``postgresql+psycopg://``)."""
    scheme, sep, rest = dsn.partition("://")
    if sep and "+" in scheme:
        return scheme.split("+", 1)[0] + "://" + rest
    return dsn


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _duration(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    if s < 172800:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"
