"""The terminal: the console every command writes its messages to (stderr), and the runner's progress bars."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["RichProgress", "console"]

console = Console(stderr=True)


class RichProgress:
    """Shows the runner's phases as rich progress bars on stderr."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, phase: str, total: int) -> None:
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
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, description=text[:70])

    def note(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text[:70])

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
