"""A real ``bao proxy`` (OpenBao's Vault Proxy) with auto-auth, for the ProxyAuth tests.

The proxy logs in with AppRole from files (as a sidecar would), keeps its token renewed, and
adds it to every request that comes without one (``api_proxy { use_auto_auth_token = true }``),
on a TCP listener and a Unix socket. vaultdb then talks to the proxy with no token at all.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
from pathlib import Path

from ._openbao import find_bao_binary
from ._ports import free_port
from ._procs import Watchdog, stop_process_group, tail

__all__ = ["BaoProxy"]

logger = logging.getLogger(__name__)

_START_TIMEOUT = 30.0


class BaoProxy:
    """``bao proxy -config=...`` in front of ``vault_addr``; see the module doc."""

    def __init__(self, workdir: str | Path, vault_addr: str, *, role_id: str, secret_id: str,
                 ca_cert: str | None = None, watchdog: Watchdog | None = None) -> None:
        self.workdir = Path(workdir)
        self.vault_addr = vault_addr
        self.ca_cert = ca_cert
        self.port = 0
        # A Unix socket path must stay under ~100 bytes: a short directory of its own.
        self._sockdir = Path(tempfile.mkdtemp(prefix="vdbp-", dir="/tmp"))
        self.socket_path = self._sockdir / "proxy.sock"
        self.log_path = self.workdir / "bao-proxy.log"
        self.role_id_file = self.workdir / "role-id"
        self.secret_id_file = self.workdir / "secret-id"
        self._role_id, self._secret_id = role_id, secret_id
        self._watchdog = watchdog
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        """``http://127.0.0.1:<port>``: the proxy's TCP listener."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def unix_addr(self) -> str:
        """``unix:///tmp/.../proxy.sock``: the proxy's Unix-socket listener."""
        return f"unix://{self.socket_path}"

    def _config(self) -> str:
        tls = f'ca_cert = "{self.ca_cert}"' if self.ca_cert else ""
        return f"""
pid_file = "{self.workdir / 'proxy.pid'}"
vault {{
  address = "{self.vault_addr}"
  {tls}
}}
auto_auth {{
  method "approle" {{
    config = {{
      role_id_file_path = "{self.role_id_file}"
      secret_id_file_path = "{self.secret_id_file}"
      remove_secret_id_file_after_reading = false
    }}
  }}
}}
api_proxy {{
  use_auto_auth_token = true
}}
listener "tcp" {{
  address = "127.0.0.1:{self.port}"
  tls_disable = true
}}
listener "unix" {{
  address = "{self.socket_path}"
  tls_disable = true
}}
"""

    def start(self) -> None:
        """Start the proxy and wait until it answers a token lookup with its own token."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.role_id_file.write_text(self._role_id)
        self.secret_id_file.write_text(self._secret_id)
        self.port = free_port()
        config = self.workdir / "proxy.hcl"
        config.write_text(self._config())
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VAULT_", "BAO_"))}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [find_bao_binary(), "proxy", f"-config={config}", "-log-level=debug"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.workdir, start_new_session=True)
        if self._watchdog is not None:
            self._watchdog.watch(self._proc.pid)
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._has_token():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"bao proxy did not come up; log tail ({self.log_path}):\n"
                                   f"{tail(self.log_path)}")
            time.sleep(0.05)

    def lookup_self(self) -> dict[str, object]:
        """``auth/token/lookup-self`` through the proxy, with no token: the proxy's own.

        The proxy strips the token's id and accessor from the answer; ``issue_time`` tells
        one token from the next.
        """
        import urllib.request

        request = urllib.request.Request(f"{self.addr}/v1/auth/token/lookup-self")
        with urllib.request.urlopen(request, timeout=2) as answer:
            data = json.loads(answer.read())["data"]
        return dict(data)

    def _has_token(self) -> bool:
        try:
            return bool(self.lookup_self().get("issue_time"))
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return False

    def stop(self) -> None:
        if self._proc is not None:
            stop_process_group(self._proc, grace=5.0, name="bao proxy")
            if self._watchdog is not None:
                self._watchdog.unwatch(self._proc.pid)
            self._proc = None
        shutil.rmtree(self._sockdir, ignore_errors=True)
