"""Child-process plumbing shared by the OpenBao and PostgreSQL wrappers.

Two concerns live here. First, stopping a server must never hang a test run, so every stop
escalates to SIGKILL of the whole process group after a grace period. Second, servers must not
outlive the test process even when it dies without running ``atexit`` hooks (SIGKILL, or
``os._exit`` from pytest-timeout's thread method). For that a tiny watchdog process holds the
read end of a pipe; when the pipe closes -- however the parent died -- it kills every process
group it was told about and removes scratch directories.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["Watchdog", "stop_process_group", "tail"]

logger = logging.getLogger(__name__)

_WATCHDOG_SOURCE = """
import os, shutil, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
pgids, dirs = set(), set()
for line in sys.stdin:
    cmd, _, arg = line.rstrip("\\n").partition(" ")
    if cmd == "add":
        pgids.add(int(arg))
    elif cmd == "del":
        pgids.discard(int(arg))
    elif cmd == "dir":
        dirs.add(arg)
    elif cmd == "undir":
        dirs.discard(arg)
for pgid in pgids:
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
"""


class Watchdog:
    """Kills registered process groups when this (parent) process goes away.

    The watchdog reads commands from its stdin; EOF means the parent is gone (or closed us on
    purpose), so it cleans up. Because the kernel closes the pipe on any kind of death, this
    covers crashes that ``atexit`` cannot.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _send(self, line: str) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                return
            try:
                proc.stdin.write(line.encode() + b"\n")
                proc.stdin.flush()
            except OSError:  # watchdog gone: nothing more we can do
                logger.debug("vaultdb test watchdog is not running")

    def watch(self, pgid: int) -> None:
        """Kill process group *pgid* if the parent dies before :meth:`unwatch`."""
        self._send(f"add {pgid}")

    def unwatch(self, pgid: int) -> None:
        """Forget *pgid* (it was stopped cleanly; the number may be reused later)."""
        self._send(f"del {pgid}")

    def watch_dir(self, path: Path) -> None:
        """Remove *path* if the parent dies (scratch data outside the workdir)."""
        self._send(f"dir {path}")

    def unwatch_dir(self, path: Path) -> None:
        """Forget *path* (the parent removed it itself)."""
        self._send(f"undir {path}")

    def close(self) -> None:
        """Close the pipe: the watchdog kills whatever is still registered and exits."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def stop_process_group(
    proc: subprocess.Popen[bytes],
    *,
    first_signal: signal.Signals = signal.SIGTERM,
    grace: float = 10.0,
    name: str = "process",
) -> None:
    """Stop *proc* (a process-group leader) politely, then forcefully; never hangs.

    The process may be SIGSTOPped (see ``pause_vault``), so SIGCONT goes first: a stopped
    process would not act on SIGTERM/SIGINT until continued.
    """
    if proc.poll() is not None:
        return
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGCONT)
        os.killpg(pgid, first_signal)
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        logger.warning("%s (pid %d) ignored %s; killing it", name, pgid, first_signal.name)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def tail(path: Path, lines: int = 40) -> str:
    """Last *lines* of a log file, for exception messages (a failed start must be debuggable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


class ServerProcess:
    """What every server the test kit starts has in common: its process, whether it runs,
    and a stop that never hangs (``STOP_SIGNAL``, then SIGKILL after ``STOP_GRACE``)."""

    NAME = "server"
    STOP_GRACE = 5.0
    _proc: subprocess.Popen[bytes] | None = None
    _watchdog: Watchdog | None = None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _forget(self) -> None:
        if self._proc is not None and self._watchdog is not None:
            self._watchdog.unwatch(self._proc.pid)

    def stop(self) -> None:
        """Stop the server; idempotent."""
        if self._proc is None:
            return
        stop_process_group(self._proc, grace=self.STOP_GRACE, name=self.NAME)
        self._forget()
        self._proc = None
