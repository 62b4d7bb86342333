"""A string that never shows itself: tokens travel through the engine wrapped in this.

Error trackers (Sentry and others) capture the local variables of every frame in a traceback
by ``repr``. Wrapping a token means the frames that hold it show ``Secret('***')``; only the
transport, building the request header, calls :meth:`reveal`.
"""

from __future__ import annotations

__all__ = ["Secret"]


class Secret:
    """A secret value with a masked ``repr``/``str``; compare with :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)
