"""The live terminal view of ``vaultdb demo`` (rich, from the ``demo`` extra).

Imported only when stdout is a terminal; :class:`vaultdb.cli._demo.PlainView` is used
otherwise. Rendering reads the demo's state on the main thread; nothing here touches Vault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from ._demo import Demo

__all__ = ["RichView"]


def _seconds(value: object) -> str:
    return f"{value:.1f}s" if isinstance(value, (int, float)) else "-"


def _short(user: str, wide: bool) -> str:
    """``v-kubernet-demo-<random>-<time>``: on a narrow terminal keep the random part."""
    parts = user.split("-")
    if wide or len(parts) < 5:
        return user
    return parts[-2][:12]


class RichView:
    def __init__(self) -> None:
        self.console = Console()
        self._live: Live | None = None

    def start(self) -> None:
        self._live = Live(console=self.console, auto_refresh=False, transient=False)
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def log(self, elapsed: float, who: str, text: str) -> None:
        if self._live is None:  # before the live view starts or after it ends
            self.console.print(f"{elapsed:6.1f}s  {who:<9} {text}", highlight=False)

    def say(self, text: str = "") -> None:
        self.console.print(text, highlight=False, markup=False)

    def render(self, demo: Demo) -> None:
        if self._live is not None:
            self._live.update(self._frame(demo), refresh=True)

    def _frame(self, demo: Demo) -> Group:
        s = demo.settings
        wide = self.console.width >= 130
        columns = [("pod", 5), ("session_user", 12), ("gen", 3), ("lease", 5), ("token", 5),
                   ("renew", 5), ("rotate", 6), ("queries", 7), ("failed", 6), ("state", 7)]
        if self.console.width < 110:
            columns.remove(("token", 5))  # the least needed column on a narrow terminal
        pods = Table(expand=True, box=None, header_style="bold", pad_edge=False)
        for column, width in columns:
            pods.add_column(column, justify="left" if column in ("pod", "session_user", "state")
                            else "right", no_wrap=True, min_width=width)
        for pod in demo.pods:
            st = pod.stats
            failed = int(st.get("failed") or 0)
            state = pod.state
            style = {"running": "green", "SIGTERM": "yellow", "exited": "dim",
                     "crashed": "bold red"}.get(state, "")
            cells: dict[str, str | Text] = {
                "pod": pod.name,
                "session_user": _short(str(st.get("session_user") or st.get("user") or "-"),
                                       wide),
                "gen": str(st.get("generation") or "-"),
                "lease": _seconds(st.get("lease_left")),
                "token": _seconds(st.get("token_left")),
                "renew": str(st.get("renewals", 0)),
                "rotate": str(st.get("rotations", 0)),
                "queries": str(st.get("queries", 0)),
                "failed": Text(str(failed), style="bold red" if failed else ""),
                "state": Text(state, style=style),
            }
            pods.add_row(*(cells[name] for name, _ in columns))
        roles = Table(box=None, header_style="bold", expand=True)
        roles.add_column(f"database users in {demo.users_table}", no_wrap=True)
        roles.add_column("pod", no_wrap=True)
        roles.add_column("sessions", justify="right", no_wrap=True)
        for user in sorted(demo.roles, key=lambda u: u.rsplit("-", 1)[-1]):
            roles.add_row(user, demo.owner.get(user, "?"), str(demo.roles[user]))
        for user in demo.gone[-4:]:
            roles.add_row(Text(user, style="dim strike"), demo.owner.get(user, "?"),
                          Text("dropped", style="dim"))
        if demo.phase == "running":
            clock = f"{demo.run_elapsed:.0f}s of {s.duration:.0f}s"
        else:
            clock = demo.phase
        stack = demo.stack
        where = (f"OpenBao {stack.vault_addr}  PostgreSQL {stack.postgres.host}:"
                 f"{stack.postgres.port}/{stack.postgres.database}" if stack else "")
        if demo.mysql is not None:
            my = demo.mysql.server
            where = (f"OpenBao {demo.mysql.stack.vault_addr}  MariaDB {my.host}:{my.port}/"
                     f"{my.database}")
        # Fit the frame to the terminal: what is left goes to the most recent events.
        used = len(demo.pods) + 4 + len(demo.roles) + min(4, len(demo.gone)) + 4 + 2
        shown = max(3, min(10, self.console.height - used - 1))
        events = Text("\n".join(demo.recent[-shown:]) or "-", style="dim", no_wrap=True,
                      overflow="ellipsis")
        return Group(
            Panel(pods, title=f"vaultdb demo - {clock}", subtitle=where,
                  subtitle_align="right"),
            Panel(roles, title=f"{demo.users_table} (role {s.default_ttl}s/{s.max_ttl}s, "
                  f"drain {s.drain:g}s)"),
            Panel(events, title="events"),
        )
