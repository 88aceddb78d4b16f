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

__all__ = ["own_peak_rss_mb"]


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
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if with_children else 0
    return round(max(own_kb, children_kb) / 1024, 1)
