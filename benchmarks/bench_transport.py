"""urllib3 side by side with vaultdb's standard-library transport (``vaultdb._http``).

    python benchmarks/bench_transport.py [--runs 40]

Prints, for each transport:

* import time: fresh interpreters that have already imported ``ssl`` and ``json`` (what any
  app has), medians of ``--runs`` starts alternating the candidates, as ratios against the
  same-run baseline (an interpreter importing nothing more);
* memory: resident memory added by importing the transport and making one request to a local
  server, against the same baseline;
* behaviour, probed for real against small servers on 127.0.0.1/127.0.0.2 (not asserted):
  a token with a newline (refused before sending? value in the error text?), a 307 to another
  host (do the token and the body follow?), an ``https://`` proxy URL (is TLS spoken to the
  proxy?), a server trickling one byte every 0.2 s (elapsed time as a ratio of the timeout), a
  4 MiB answer (refused?).

What neither probe can show (Unix sockets, a client certificate per request, consistency
headers) is printed from the libraries' documentation. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata

#: What the stdlib transport imports beyond ``ssl`` and ``json`` (``vaultdb._http`` itself is
#: measured together with the vaultdb package, which any user imports anyway).
STDLIB = "import http.client, urllib.parse, base64, socket, threading, dataclasses"
CANDIDATES = {
    "baseline": "pass",
    "stdlib transport": STDLIB,
    "urllib3": "import urllib3",
    "vaultdb": "import vaultdb._http",
    "vaultdb + urllib3": "import vaultdb._http, urllib3",
}

IMPORT_PROBE = textwrap.dedent("""
    import ssl, json, time, sys
    t = time.perf_counter()
    exec(sys.argv[1])
    print(time.perf_counter() - t)
""")

MEMORY_PROBE = textwrap.dedent("""
    import ssl, json, sys
    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    which, url = sys.argv[1], sys.argv[2]
    if which == "vaultdb":
        from vaultdb._http import VaultHTTP
        VaultHTTP(url, timeout=5).request("GET", "sys/health")
    elif which == "vaultdb + urllib3":
        import vaultdb._http, urllib3
        urllib3.PoolManager().request("GET", url + "/v1/sys/health").json()
    print(rss_kib())
""")


def median_import_ms(runs: int) -> dict[str, float]:
    """Bytecode compiled first and kept (PYTHONDONTWRITEBYTECODE dropped), as in a wheel
    install: otherwise vaultdb's import would include compiling its source."""
    import compileall
    import os

    import vaultdb

    compileall.compile_dir(os.path.dirname(vaultdb.__file__), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for _ in range(runs):
        for name, code in CANDIDATES.items():
            out = subprocess.run([sys.executable, "-c", IMPORT_PROBE, code], text=True, env=env,
                                 capture_output=True, check=True, timeout=60).stdout
            times[name].append(float(out) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def rss_mib(url: str, runs: int = 5) -> dict[str, float]:
    found: dict[str, list[int]] = {"baseline": [], "vaultdb": [], "vaultdb + urllib3": []}
    for _ in range(runs):
        for name in found:
            out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, name, url], text=True,
                                 capture_output=True, check=True, timeout=60).stdout
            found[name].append(int(out))
    return {name: min(values) / 1024 for name, values in found.items()}


# -- local servers (bounded: each answers a handful of requests) ---------------------------------

class Recorder(BaseHTTPRequestHandler):
    """Answers ``{}``; a path starting /redirect/ answers 307 to the other host."""

    seen: list[tuple[str, str | None, bytes]] = []
    other = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        self.seen.append((host, self.headers.get("X-Vault-Token"), body))
        if "/redirect/" in self.path:
            self.send_response(307)
            self.send_header("Location", self.other + "/v1/landed")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        big = self.path.endswith("/big")
        payload = b'{"data": "' + b"x" * (4 << 20) + b'"}' if big else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _handle


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that refuses the 4 MiB answer hangs up mid-write: expected here."""


def serve(host: str) -> ThreadingHTTPServer:
    server = QuietServer((host, 0), Recorder)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def drip_server(step: float = 0.2, count: int = 10) -> str:
    """Headers at once, then the body one byte every ``step`` seconds (one connection)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\n\r\n")
        try:
            for _ in range(count):
                time.sleep(step)
                conn.sendall(b" ")
            conn.sendall(b"{}")
        except OSError:
            pass
        conn.close()
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}"


def first_bytes_server() -> tuple[str, list[bytes]]:
    """Records the first bytes a client sends to a would-be proxy, then hangs up."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got: list[bytes] = []

    def run() -> None:
        conn, _ = srv.accept()
        conn.settimeout(2)
        try:
            got.append(conn.recv(65536))
        except OSError:
            got.append(b"")
        conn.close()
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return f"127.0.0.1:{srv.getsockname()[1]}", got


# -- the probes ----------------------------------------------------------------------------------

SECRET = "hvs.BENCH-SECRET"


def probe_stdlib(main: str, other: str) -> dict[str, str]:
    import os

    from vaultdb._http import VaultHTTP

    found: dict[str, str] = {}
    try:
        VaultHTTP(main, timeout=2).request("GET", "sys/health", token=SECRET + "\n")
        found["newline in a token"] = "sent"
    except Exception as exc:
        leak = SECRET in str(exc) or SECRET in repr(exc.__context__)
        found["newline in a token"] = f"refused ({type(exc).__name__}; value in text: {leak})"
    Recorder.seen.clear()
    try:
        VaultHTTP(main, timeout=2).request("POST", "redirect/login", token=SECRET,
                                           body={"secret_id": "S"})
    except Exception as exc:
        found["307 to another host"] = f"refused ({type(exc).__name__})"
    else:
        leaked = [s for s in Recorder.seen if s[0] == "127.0.0.2" and (s[1] or s[2])]
        found["307 to another host"] = ("followed, token and body sent" if leaked
                                        else "followed without secrets")
    address, got = first_bytes_server()
    os.environ["HTTPS_PROXY"] = f"https://user:pw@{address}"
    try:
        VaultHTTP("https://vault.invalid:8200", timeout=2).request("GET", "sys/health")
    except Exception as exc:
        found["https:// proxy"] = f"error {type(exc).__name__}"
    finally:
        del os.environ["HTTPS_PROXY"]
    if got and got[0]:
        found["https:// proxy"] = ("TLS to the proxy" if got[0][:1] == b"\x16"
                                   else "plain text to the proxy (credentials in clear)")
    elif "https:// proxy" not in found or got == []:
        found["https:// proxy"] = found.get("https:// proxy", "nothing sent")
    else:
        found["https:// proxy"] += ", nothing sent"
    started = time.monotonic()
    try:
        VaultHTTP(drip_server(), timeout=0.5).request("GET", "sys/health")
        outcome = "answered"
    except Exception as exc:
        outcome = type(exc).__name__
    found["1 byte / 0.2 s, timeout 0.5 s"] = (
        f"{outcome} after {(time.monotonic() - started) / 0.5:.1f}x the timeout")
    try:
        VaultHTTP(main, timeout=5).request("GET", "big")
        found["4 MiB answer"] = "read whole"
    except Exception as exc:
        found["4 MiB answer"] = f"refused ({type(exc).__name__})"
    return found


def probe_urllib3(main: str, other: str) -> dict[str, str]:
    import urllib3

    found: dict[str, str] = {}
    pool = urllib3.PoolManager(timeout=urllib3.Timeout(total=2), retries=urllib3.Retry(
        total=3, redirect=3, remove_headers_on_redirect=["X-Vault-Token", "Authorization"]))
    try:
        pool.request("GET", main + "/v1/sys/health", headers={"X-Vault-Token": SECRET + "\n"})
        found["newline in a token"] = "sent"
    except Exception as exc:
        leak = SECRET in str(exc) or SECRET in repr(exc.__context__)
        found["newline in a token"] = f"refused ({type(exc).__name__}; value in text: {leak})"
    Recorder.seen.clear()
    pool.request("POST", main + "/redirect/login", headers={"X-Vault-Token": SECRET},
                 body=json.dumps({"secret_id": "S"}).encode())
    to_other = [s for s in Recorder.seen if s[0] == "127.0.0.2"]
    found["307 to another host"] = "followed: " + ", ".join(
        f"token {'sent' if s[1] else 'removed'}, body {'sent' if s[2] else 'dropped'}"
        for s in to_other)
    address, got = first_bytes_server()
    proxied = urllib3.ProxyManager(f"https://{address}", timeout=2, retries=False,
                                   proxy_headers=urllib3.make_headers(proxy_basic_auth="u:pw"))
    with contextlib.suppress(Exception):
        proxied.request("GET", "https://vault.invalid:8200/v1/sys/health")
    found["https:// proxy"] = ("TLS to the proxy" if got and got[0][:1] == b"\x16"
                               else "plain text to the proxy")
    started = time.monotonic()
    try:
        urllib3.PoolManager(timeout=urllib3.Timeout(total=0.5), retries=False).request(
            "GET", drip_server() + "/v1/sys/health")
        outcome = "answered"
    except Exception as exc:
        outcome = type(exc).__name__
    found["1 byte / 0.2 s, timeout 0.5 s"] = (
        f"{outcome} after {(time.monotonic() - started) / 0.5:.1f}x the timeout")
    answer = pool.request("GET", main + "/v1/big")
    found["4 MiB answer"] = f"read whole ({len(answer.data) >> 20} MiB)"
    return found


DOCUMENTED = {
    "Unix socket (unix:///path)": ("yes, by hand (AF_UNIX in vaultdb._wire)",
                                   "no (needs a custom HTTPConnection subclass)"),
    "client certificate per login": ("yes, by hand (VaultHTTP.with_client_cert)",
                                     "yes (pool_kwargs cert_file/key_file: a pool per cert)"),
    "consistency headers (X-Vault-Index)": ("yes (request headers in, response headers out)",
                                            "yes"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()

    main_server, other_server = serve("127.0.0.1"), serve("127.0.0.2")
    main_url = f"http://127.0.0.1:{main_server.server_address[1]}"
    Recorder.other = f"http://127.0.0.2:{other_server.server_address[1]}"

    ms = median_import_ms(args.runs)
    added = {name: ms[name] - ms["baseline"] for name in CANDIDATES}
    print(f"import time, medians of {args.runs} fresh interpreters after `import ssl, json` "
          f"(baseline interpreter {ms['baseline']:.2f} ms of imports):")
    for name in ("stdlib transport", "urllib3", "vaultdb", "vaultdb + urllib3"):
        print(f"  {name:<18} +{added[name]:6.2f} ms")
    on_top = added["vaultdb + urllib3"] - added["vaultdb"]
    ratio = added["urllib3"] / added["stdlib transport"]
    print(f"  urllib3 / stdlib transport modules: {ratio:.1f}x;"
          f" urllib3 on top of vaultdb: +{on_top:.2f} ms = {on_top / added['vaultdb']:.2f}x"
          " vaultdb's own import")

    rss = rss_mib(main_url)
    print("resident memory added by importing and one request to a local server (min of 5):")
    for name in ("vaultdb", "vaultdb + urllib3"):
        print(f"  {name:<18} +{rss[name] - rss['baseline']:.2f} MiB "
              f"(baseline {rss['baseline']:.1f} MiB)")
    extra = rss["vaultdb + urllib3"] - rss["vaultdb"]
    print(f"  urllib3 instead of http.client: +{extra:.2f} MiB = "
          f"{extra / (rss['vaultdb'] - rss['baseline']):.2f}x vaultdb's own")

    print(f"behaviour (urllib3 {metadata.version('urllib3')}):")
    stdlib, u3 = probe_stdlib(main_url, Recorder.other), probe_urllib3(main_url, Recorder.other)
    width = max(map(len, [*stdlib, *DOCUMENTED]))
    print(f"  {'':<{width}}  | vaultdb._http | urllib3")
    for key in stdlib:
        print(f"  {key:<{width}}  | {stdlib[key]} | {u3[key]}")
    for key, (ours, theirs) in DOCUMENTED.items():
        print(f"  {key:<{width}}  | {ours} | {theirs}")
    main_server.shutdown()
    other_server.shutdown()


if __name__ == "__main__":
    main()
