"""The terminal: the console every command writes its messages to (stderr), and the runner's progress bars.

On a terminal the phases are rich progress bars. Where standard error is not one (a pipe, a CI log) they are plain
lines instead: one when a phase starts, one every :data:`PLAIN_EVERY_S` seconds of a long phase (how far, how long,
the outcomes so far, the last item), one for each note, and one when it ends.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["PLAIN_EVERY_S", "RichProgress", "console"]

console = Console(stderr=True)

#: Seconds between two plain progress lines of one phase (where standard error is not a terminal).
PLAIN_EVERY_S = 10.0
_STATUSES = ("PASS", "FAIL", "ERROR", "CRASH", "TIMEOUT", "UNSUPPORTED", "SKIPPED", "DISPUTED")


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class _PlainPhase:
    """One phase as plain lines on stderr."""

    def __init__(self, phase: str, total: int, every_s: float) -> None:
        self.phase, self.total, self.every_s = phase, total, every_s
        self.done = 0
        self.t0 = self.last = time.monotonic()
        self.outcomes: Counter[str] = Counter()
        self.text = ""
        self._line(f"{total} to do")

    def _line(self, text: str) -> None:
        print(f"[{self.phase}] {text}", file=sys.stderr, flush=True)

    def _state(self) -> str:
        tally = ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common())
        return f"{self.done}/{self.total} in {_clock(time.monotonic() - self.t0)}" + (f" ({tally})" if tally else "")

    def advance(self, text: str) -> None:
        self.done += 1
        self.text = text
        word = text.rsplit(": ", 1)[-1].strip() if ": " in text else ""
        if word in _STATUSES:
            self.outcomes[word] += 1
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._line(f"{self._state()}; last: {text[:100]}")

    def note(self, text: str) -> None:
        self._line(text)

    def stop(self) -> None:
        self._line(f"done: {self._state()}")


class RichProgress:
    """Shows the runner's phases as rich progress bars on stderr, or as plain lines where it is no terminal."""

    def __init__(self, plain: bool | None = None, every_s: float = PLAIN_EVERY_S) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._plain_phase: _PlainPhase | None = None
        self.plain = (not console.is_terminal) if plain is None else plain
        self.every_s = every_s

    def start(self, phase: str, total: int) -> None:
        if self.plain:
            self._plain_phase = _PlainPhase(phase, total, self.every_s)
            return
        self._progress = Progress(
            TextColumn("[bold]{task.fields[phase]:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}", style="dim"),
            console=console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("", total=total, phase=phase)

    def advance(self, text: str) -> None:
        if self._plain_phase is not None:
            self._plain_phase.advance(text)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, description=text[:70])

    def note(self, text: str) -> None:
        if self._plain_phase is not None:
            self._plain_phase.note(text)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text[:70])

    def stop(self) -> None:
        if self._plain_phase is not None:
            self._plain_phase.stop()
            self._plain_phase = None
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
