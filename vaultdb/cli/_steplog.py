"""Keep vaultdb's own warnings (Vault call retries) out of the middle of a report.

While ``vaultdb check`` prints its report, WARNING and higher records of the ``vaultdb``
loggers are held and handed to the report, which prints them under the step they belong to;
the retries of one failing call become one note ("retried 2 times: ..."). Lower levels (what
``-v`` asks for) still reach the usual handlers, as if they propagated.
"""

from __future__ import annotations

import logging
from collections import Counter
from types import TracebackType

from ..errors import VaultDBError

__all__ = ["HeldWarnings"]


class HeldWarnings(logging.Handler):
    """Holds WARNING+ records of ``logger_name`` until :meth:`take`; forwards the rest."""

    def __init__(self, logger_name: str = "vaultdb") -> None:
        super().__init__(logging.NOTSET)
        self._logger = logging.getLogger(logger_name)
        self._propagate = self._logger.propagate
        self._held: list[str] = []
        self._retries: Counter[str] = Counter()

    def __enter__(self) -> HeldWarnings:
        self._propagate = self._logger.propagate
        self._logger.propagate = False
        self._logger.addHandler(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            if record.name == "vaultdb._vault" and str(record.msg).startswith("Vault call failed"):
                exc = record.args[0] if isinstance(record.args, tuple) and record.args else None
                failure = _failure(exc)
                if failure not in self._retries:
                    self._held.append(failure)
                self._retries[failure] += 1
            else:
                self._held.append(record.getMessage())
            return
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def take(self) -> list[str]:
        """The messages held since the last call, oldest first."""
        held, retries = self._held, self._retries
        self._held, self._retries = [], Counter()
        return [f"retried {retries[m]} time(s) after: {m}" if m in retries else m for m in held]


def _failure(exc: object) -> str:
    """A retried failure in a few words: the error and where (its hint is on the step)."""
    if not isinstance(exc, VaultDBError):
        return str(exc)
    where = f" ({exc.method} {exc.path})" if exc.method and exc.path else ""
    return exc.message + where
