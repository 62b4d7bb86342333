"""Keep vaultdb's own warnings (Vault call retries) out of the middle of a report.

While ``vaultdb check`` prints its report, WARNING and higher records of the ``vaultdb``
loggers are held and handed to the report, which prints them under the step they belong to.
Lower levels (what ``-v`` asks for) still reach the usual handlers, as if they propagated.
"""

from __future__ import annotations

import logging
from types import TracebackType

__all__ = ["HeldWarnings"]


class HeldWarnings(logging.Handler):
    """Holds WARNING+ records of ``logger_name`` until :meth:`take`; forwards the rest."""

    def __init__(self, logger_name: str = "vaultdb") -> None:
        super().__init__(logging.NOTSET)
        self._logger = logging.getLogger(logger_name)
        self._propagate = self._logger.propagate
        self._held: list[str] = []

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
            self._held.append(record.getMessage())
            return
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def take(self) -> list[str]:
        """The messages held since the last call, oldest first."""
        held, self._held = self._held, []
        return held
