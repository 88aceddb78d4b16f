"""Peak memory of this process, measured so that the process that started it is not charged.

``getrusage(RUSAGE_SELF).ru_maxrss`` will not do for that: Linux copies the parent's
high-water mark into the child's at exec (the child starts as a copy of its parent), so
a small harness started by a large test session, or a small tool started by the harness,
would report the parent's memory. ``VmHWM`` in ``/proc/self/status`` counts this
process's own address space since its exec.
"""

from __future__ import annotations

import resource
from pathlib import Path

__all__ = ["TreeSampler", "add_child_peak", "own_peak_rss_mb", "tree_pss_mb"]


#: The largest peak (kB) of a child this process could not wait for itself (a tool run in a sandbox whose own
#: init reaps it, so its usage never reaches ``RUSAGE_CHILDREN``): measured inside the sandbox and told here.
_unwaited: list[int] = [0]


def add_child_peak(kb: int) -> None:
    """Count the peak resident memory of a child measured elsewhere (inside its sandbox) among the children's."""
    _unwaited[0] = max(_unwaited[0], int(kb))


def own_peak_rss_mb(*, with_children: bool = False) -> float | None:
    """Peak resident memory of this process since its exec (MiB), or None where Linux does not say it.

    ``with_children``: also the processes it waited for (a tool's subprocesses, such as dcmqi's
    binaries), from ``RUSAGE_CHILDREN``, whose own exec-time copy of this process is never
    larger than this process's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                own_kb = int(line.split()[1])
                break
        else:
            return None
    except (OSError, ValueError):
        return None
    children_kb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, _unwaited[0]) if with_children else 0
    return round(max(own_kb, children_kb) / 1024, 1)


def _children_map() -> dict[int, list[int]]:
    """Every process's children, from /proc (empty where there is no /proc)."""
    kids: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return kids
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_pss_mb(pid: int) -> float | None:
    """Proportional set size of a process and all its descendants (MiB): what the tree holds in memory, each page
    shared between its processes counted once in all (``/proc/PID/smaps_rollup``); None if the process is gone."""
    kids = _children_map()
    todo, total, seen = [pid], 0, False
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                seen = True
                break
    return round(total / 1024, 1) if seen else None


class TreeSampler:
    """The peak memory of a process tree (a viewer's browser) while a ``with`` block runs, sampled in a thread.

    ``peak_mb`` is the largest :func:`tree_pss_mb` seen, every ``interval_s`` and once at either end; a peak
    between two samples can be missed, so it is a lower bound of the true peak (said where it is shown).
    """

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        import threading

        self.pid, self.interval_s = pid, interval_s
        self.peak_mb: float | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"memory of {pid}", daemon=True)

    def _sample(self) -> None:
        mb = tree_pss_mb(self.pid)
        self.samples += 1
        if mb is not None and (self.peak_mb is None or mb > self.peak_mb):
            self.peak_mb = mb

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        """Start sampling (a process id of 0 or less: nothing is sampled, the peak stays None)."""
        if self.pid > 0 and not self._thread.is_alive() and not self._stop.is_set():
            self._sample()
            self._thread.start()

    def stop(self) -> None:
        """Stop sampling, with one last sample; again: nothing."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self._sample()
        self._stop.set()

    def __enter__(self) -> TreeSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
