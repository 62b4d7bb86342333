"""The ``vaultdb`` command line: ``demo``, ``dev``, ``check`` and ``exec``.

* ``vaultdb demo``: starts a real OpenBao, PostgreSQL and a Kubernetes TokenReview stand-in on
  127.0.0.1 and shows three "pods" getting, renewing, rotating and revoking their own database
  users (needs the ``demo`` extra).
* ``vaultdb dev``: the same stack for your own app: prints the environment to export (the URL
  plugin's ``DATABASE_URL``, ``VAULT_*``, ``PG*``) and stays up until Ctrl-C.
* ``vaultdb check``: a step-by-step preflight for a real deployment, run with the app's own
  environment (``kubectl exec deploy/app -- vaultdb check``).
* ``vaultdb exec -- CMD ...``: credentials for processes that are not Python (migrations, psql,
  other services): exported to the child, renewed while it runs, rotated by restart or signal,
  revoked at the end.

Exit codes are listed in ``docs/cli.md``; every subcommand uses 2 for a usage error. Nothing
printed ever contains a password or a Vault token. Subcommand modules are imported only when
their subcommand runs, so ``vaultdb check`` works without the demo's dependencies.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import VaultDBError

__all__ = ["EXIT_USAGE", "error_lines", "hint_sentence", "main"]

logger = logging.getLogger("vaultdb.cli")

EXIT_USAGE = 2


#: First words that make a hint an instruction already ("set VAULTDB_ROLE ..."): it is only
#: capitalised. Any other hint names what to check ("VAULT_ADDR and ...") and gets "Check".
_IMPERATIVES = frozenset({
    "add", "bind", "check", "create", "delete", "enable", "give", "grant", "install", "keep",
    "lower", "make", "mount", "pass", "point", "prefer", "raise", "remove", "restart", "run",
    "see", "set", "try", "unseal", "upgrade", "use", "wait", "write"})
#: Words that make a hint a statement ("VAULT_ADDR must start with ...", "nothing: ...").
_STATEMENT_WORDS = frozenset({"must", "is", "are", "should", "nothing:", "allowed:"})


def hint_sentence(hint: str) -> str:
    """A hint as a sentence of its own: ``Check VAULT_ADDR ...`` or ``Set VAULTDB_ROLE ...``.

    Error hints are written to follow ``Check:`` in an exception message; the command line
    prints them on their own line, where they must read as sentences.
    """
    text = hint.strip()
    if not text or (text[0].isupper() and text[-1] in ".!?"):
        return text  # written as a sentence already
    words = text.split()
    first = words[0].lower()
    if first == "one" and len(words) > 1 and words[1] == "of":
        text = "use " + text
    elif first not in _IMPERATIVES and not _STATEMENT_WORDS & {w.lower() for w in words[:3]}:
        text = "check " + text
    text = text[0].upper() + text[1:]
    return text + "." if text[-1].isalnum() or text[-1] in ")'\"" else text


def error_lines(exc: BaseException) -> list[str]:
    """An error as printable lines: what happened, then ``hint: ...`` (never a secret)."""
    if not isinstance(exc, VaultDBError):
        return [f"{type(exc).__name__}: {exc}"]
    text = exc.message
    if exc.method and exc.path:
        where = f"{exc.method} {exc.path}"
        text += f" ({where}, HTTP {exc.status})" if exc.status else f" ({where})"
    if exc.vault_errors:
        text += " Vault said: " + "; ".join(exc.vault_errors)
    lines = [text]
    if exc.hint:
        lines.append(f"hint: {hint_sentence(exc.hint)}")
    return lines


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("vaultdb: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _parser() -> argparse.ArgumentParser:
    from . import _check, _demo, _dev, _exec

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v: what vaultdb does, -vv: debug)")
    parser = argparse.ArgumentParser(
        prog="vaultdb",
        description="Short-lived database credentials from Vault / OpenBao.",
        epilog="Run 'vaultdb <command> --help' for a command's options.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"vaultdb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _demo.add_parser(sub, common)
    _dev.add_parser(sub, common)
    _check.add_parser(sub, common)
    _exec.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vaultdb`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    _configure_logging(args.verbose)
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        print("vaultdb: interrupted", file=sys.stderr)
        return 130
    return status
