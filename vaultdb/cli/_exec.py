"""``vaultdb exec -- CMD ...``: database credentials for a process that is not Python.

vaultdb logs in, fetches credentials, starts the command with them in its environment
(``PGUSER``/``PGPASSWORD`` by default, optionally a URL such as ``DATABASE_URL`` and an env
file), and stays as its parent: it renews the lease while the command runs and, when the
provider rotates (before ``max_ttl`` or the login token's end), either restarts the command
with the fresh credentials or sends it a signal (``--on-rotate``). Signals are forwarded, the
exit status is the command's, and everything is revoked at the end -- so a Kubernetes Job
finishes cleanly, which a Vault Agent sidecar never lets it do.

The command never sees a login secret: every variable in
:data:`vaultdb.settings.LOGIN_SECRET_VARIABLES` is removed from its environment, and nothing
else. A stopping signal (SIGTERM, SIGINT, SIGQUIT, SIGHUP) that arrives during the first login
is held until that login ends; then whatever it created is revoked and the command is never
started. When rotation fails for good -- the credentials expired and no fresh ones replaced
them (the provider's ``LeaseExpired``, with ``status().healthy`` still false) -- the command is
stopped like on a restart and vaultdb exits 125, so an orchestrator starts it again from a
fresh login instead of leaving it running on a database user Vault has dropped.

Exit status: the command's own (128+N when a signal N killed it); 125 when vaultdb could not
get credentials, is misconfigured or lost them for good, 126 when the command cannot be
executed, 127 when it is not found, 128+N when signal N stopped vaultdb before the command
started, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

from .. import events as ev
from ..credentials import Credentials
from ..errors import VaultDBError
from ..settings import LOGIN_SECRET_VARIABLES

__all__ = ["ExecOptions", "add_parser", "child_environment", "render_url", "run"]

logger = logging.getLogger("vaultdb.cli.exec")

EXIT_VAULTDB = 125
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
EXIT_USAGE = 2

#: Signals passed on to the command. SIGINT/SIGQUIT typed at a terminal already reach the
#: command (same foreground process group), so they are not sent a second time.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
             signal.SIGUSR2)
STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
#: Before the command runs, a hangup (a closed terminal or ``kubectl exec`` session) also stops
#: vaultdb: there is nobody to hand the signal to yet.
STOPPING_BEFORE_START = (*STOPPING, signal.SIGHUP)


@dataclass(frozen=True)
class ExecOptions:
    user_var: str = "PGUSER"
    password_var: str = "PGPASSWORD"
    url_template: str | None = None
    url_var: str = "DATABASE_URL"
    env_file: str | None = None
    #: ``None`` restarts the command on rotation; otherwise the signal to send it.
    on_rotate: signal.Signals | None = None
    grace: float = 10.0


def _on_rotate(value: str) -> signal.Signals | None:
    if value.lower() == "restart":
        return None
    name = value.upper()
    try:
        if name.isdigit():
            return signal.Signals(int(name))
        return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither 'restart' nor a signal name (e.g. SIGHUP)") from None


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "exec", parents=[common],
        help="run a command with credentials in its environment; renew, rotate, revoke",
        usage="vaultdb exec [options] -- COMMAND [ARG ...]",
        description="Fetch database credentials, start COMMAND with them in its environment, "
        "renew them while it runs, restart it (or signal it) when they rotate, forward signals, "
        "revoke at the end and exit with COMMAND's status. Configured like the library: "
        "VAULT_ADDR, VAULTDB_ROLE, VAULTDB_AUTH_METHOD, ... (see docs/configuration.md).",
        epilog="Examples: vaultdb exec -- alembic upgrade head | vaultdb exec -- psql | "
        "vaultdb exec --url-template 'postgresql://{username}:{password}@db:5432/app' -- "
        "./server. Exit status: the command's (128+N if killed by signal N); 125 vaultdb "
        "failed, 126 cannot execute, 127 not found, 2 usage.")
    p.add_argument("--role", help="database role (default: $VAULTDB_ROLE)")
    p.add_argument("--mount", help="database secrets engine mount (default: $VAULTDB_MOUNT)")
    p.add_argument("--static", action="store_true", default=None,
                   help="static role (static-creds/<role>)")
    p.add_argument("--user-var", default="PGUSER", metavar="NAME",
                   help="variable for the username (default PGUSER; '' for none)")
    p.add_argument("--password-var", default="PGPASSWORD", metavar="NAME",
                   help="variable for the password (default PGPASSWORD; '' for none)")
    p.add_argument("--url-template", metavar="TEMPLATE",
                   help="also export a URL built from this template; {username} and {password} "
                   "are replaced (percent-encoded)")
    p.add_argument("--url-var", default="DATABASE_URL", metavar="NAME",
                   help="variable for --url-template (default DATABASE_URL)")
    p.add_argument("--env-file", metavar="PATH",
                   help="also write the variables to PATH (mode 0600, rewritten on rotation, "
                   "deleted at exit): for a command that re-reads it on --on-rotate SIGHUP")
    p.add_argument("--on-rotate", type=_on_rotate, default=None, metavar="restart|SIGNAL",
                   help="on rotation restart the command (default) or send it SIGNAL")
    p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                   help="on restart, wait this long after SIGTERM before SIGKILL (default 10)")
    p.add_argument("--drain", type=float, metavar="SECONDS",
                   help="how long rotated-out credentials stay valid (default: "
                   "$VAULTDB_DRAIN_SECONDS or 30)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    p.set_defaults(run=run)


def render_url(template: str, creds: Credentials) -> str:
    return template.format(username=quote(creds.username, safe=""),
                           password=quote(creds.password, safe=""))


def child_environment(base: Mapping[str, str], creds: Credentials, opts: ExecOptions
                      ) -> dict[str, str]:
    """The command's environment: ours minus the login secrets, plus the credentials."""
    env = {k: v for k, v in base.items() if k not in LOGIN_SECRET_VARIABLES}
    env.update(_credential_vars(creds, opts))
    return env


def _credential_vars(creds: Credentials, opts: ExecOptions) -> dict[str, str]:
    out: dict[str, str] = {}
    if opts.user_var:
        out[opts.user_var] = creds.username
    if opts.password_var:
        out[opts.password_var] = creds.password
    if opts.url_template:
        out[opts.url_var] = render_url(opts.url_template, creds)
    return out


def _write_env_file(path: str, values: Mapping[str, str]) -> None:
    """Atomically replace ``path`` with ``KEY=value`` lines, readable by the owner only."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".vaultdb-env-", dir=target.parent or ".")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(f"{k}={shlex.quote(v)}\n" for k, v in values.items())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _usage_error(message: str) -> int:
    print(f"vaultdb exec: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        return _usage_error("no command given (vaultdb exec [options] -- COMMAND ...)")
    opts = ExecOptions(user_var=args.user_var, password_var=args.password_var,
                       url_template=args.url_template, url_var=args.url_var,
                       env_file=args.env_file, on_rotate=args.on_rotate, grace=args.grace)
    if opts.url_template:
        try:
            render_url(opts.url_template, Credentials("u", "p", None, 0, _EPOCH, 0))
        except (KeyError, IndexError, ValueError) as exc:
            return _usage_error(f"--url-template: {exc!r}; use {{username}} and {{password}}")
    from ..provider import CredentialProvider

    overrides: dict[str, object] = {"handle_sigterm": False}
    for key, value in (("role", args.role), ("mount", args.mount), ("static", args.static),
                       ("drain_seconds", args.drain)):
        if value is not None:
            overrides[key] = value
    try:
        provider = CredentialProvider.from_env(None, **overrides)
    except VaultDBError as exc:
        return _vaultdb_error(exc)
    try:
        return Supervisor(provider, command, opts).run()
    finally:
        if opts.env_file:
            with contextlib.suppress(OSError):
                os.unlink(opts.env_file)


def _vaultdb_error(exc: VaultDBError) -> int:
    from . import error_lines

    for line in error_lines(exc):
        print(f"vaultdb exec: {line}", file=sys.stderr)
    return EXIT_VAULTDB


class Supervisor:
    """Runs the command, reacts to rotations and signals. All on the main thread."""

    def __init__(self, provider: Any, command: Sequence[str], opts: ExecOptions) -> None:
        self.provider = provider
        self.command = list(command)
        self.opts = opts
        self.rotations: queue.Queue[ev.LeaseRotated] = queue.Queue()
        self.expired: queue.Queue[ev.LeaseExpired] = queue.Queue()
        self.child: subprocess.Popen[bytes] | None = None
        self._child_pid: int | None = None  # cleared once reaped: never signal a reused pid
        self.stopping = False
        self.stop_signal: int | None = None  # the first stopping signal received
        self._interactive = _foreground_tty()

    # -- signals ----------------------------------------------------------------------------

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        pid = self._child_pid
        if signum in STOPPING or (self.child is None and signum in STOPPING_BEFORE_START):
            self.stopping = True
            if self.stop_signal is None:
                self.stop_signal = signum
        if self._interactive and signum in (signal.SIGINT, signal.SIGQUIT):
            return  # the terminal sent it to the command as well
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous
        for sig in FORWARDED:
            previous[sig] = signal.signal(sig, self._forward)
        return previous

    # -- the command ------------------------------------------------------------------------

    def _spawn(self, creds: Credentials) -> subprocess.Popen[bytes]:
        env = child_environment(os.environ, creds, self.opts)
        if self.opts.env_file:
            _write_env_file(self.opts.env_file, _credential_vars(creds, self.opts))
        logger.info("starting %s as user %r (generation %d)", shlex.join(self.command),
                    creds.username, creds.generation)
        child = subprocess.Popen(self.command, env=env)
        self.child, self._child_pid = child, child.pid
        return child

    def _reaped(self, child: subprocess.Popen[bytes], code: int) -> int:
        if child is self.child:
            self._child_pid = None
        logger.info("command exited with status %d", code)
        return code

    def _stop(self, child: subprocess.Popen[bytes]) -> int:
        """SIGTERM, then SIGKILL after the grace period; returns the exit status."""
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        try:
            code = child.wait(timeout=self.opts.grace)
        except subprocess.TimeoutExpired:
            logger.warning("command did not stop within %.0fs of SIGTERM: killing it",
                           self.opts.grace)
            child.kill()
            code = child.wait()
        return self._reaped(child, code)

    def _lost_for_good(self) -> bool:
        """Whether credentials expired and are still not replaced (rotation failed for good)."""
        event: ev.LeaseExpired | None = None
        with contextlib.suppress(queue.Empty):
            while True:
                event = self.expired.get_nowait()
        if event is None or self.provider.status().healthy:
            return False  # nothing expired, or fresh credentials already replaced them
        message = (f"credentials of user {event.credentials.username!r} expired and could not "
                   "be replaced (Vault unreachable or refusing): stopping the command")
        logger.error(message)
        print(f"vaultdb exec: {message}", file=sys.stderr, flush=True)
        return True

    def _rotate(self, event: ev.LeaseRotated) -> int | None:
        """React to a rotation; returns an exit status if the command ended meanwhile."""
        # Several queued rotations collapse into one reaction with the newest credentials.
        with contextlib.suppress(queue.Empty):
            while True:
                event = self.rotations.get_nowait()
        creds = self.provider.credentials()
        child = self.child
        assert child is not None
        if self.opts.on_rotate is not None:
            if self.opts.env_file:
                _write_env_file(self.opts.env_file, _credential_vars(creds, self.opts))
            logger.info("credentials rotated (%s): user %r -> %r; sending %s to the command",
                        event.reason, event.previous.username, creds.username,
                        self.opts.on_rotate.name)
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(self.opts.on_rotate)
            return None
        logger.info("credentials rotated (%s): user %r -> %r; restarting the command",
                    event.reason, event.previous.username, creds.username)
        code = self._stop(child)
        if self.stopping:
            return code
        child = self._spawn(creds)
        if self.stopping:  # a signal came between the check and the spawn
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        return None

    def run(self) -> int:
        """Log in, run the command, and revoke at the end; returns the exit status."""
        # Handlers first: a SIGTERM during the first login must not kill vaultdb between a
        # lease being created and it being revoked.
        previous = self._install_signals()
        try:
            return self._run()
        finally:
            self.provider.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        try:
            creds = self.provider.credentials()
        except VaultDBError as exc:
            return _vaultdb_error(exc)
        if self.stop_signal is not None:
            name = signal.Signals(self.stop_signal).name
            logger.info("%s arrived during the first login: revoking, not starting the command",
                        name)
            print(f"vaultdb exec: {name} received before the command started; revoked",
                  file=sys.stderr, flush=True)
            return 128 + self.stop_signal
        self.provider.subscribe(self.rotations.put, ev.LeaseRotated)
        self.provider.subscribe(self.expired.put, ev.LeaseExpired)
        try:
            child = self._spawn(creds)
        except FileNotFoundError:
            print(f"vaultdb exec: {self.command[0]}: command not found", file=sys.stderr)
            return EXIT_NOT_FOUND
        except PermissionError:
            print(f"vaultdb exec: {self.command[0]}: permission denied", file=sys.stderr)
            return EXIT_CANNOT_EXECUTE
        while True:
            try:
                rotated: ev.LeaseRotated | None = self.rotations.get(timeout=0.1)
            except queue.Empty:
                rotated = None
            child = self.child or child
            code = child.poll()
            if code is not None:
                return _exit_status(self._reaped(child, code))
            if not self.stopping and self._lost_for_good():
                self._stop(child)
                return EXIT_VAULTDB
            if rotated is not None and not self.stopping:
                ended = self._rotate(rotated)
                if ended is not None:
                    return _exit_status(ended)


def _exit_status(code: int) -> int:
    return 128 - code if code < 0 else code


def _foreground_tty() -> bool:
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _epoch() -> Any:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(0, timezone.utc)


_EPOCH = _epoch()
