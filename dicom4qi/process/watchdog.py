"""``python -m dicom4qi.process.watchdog HARNESS_ID PID...``: stop a service's processes when the harness is gone.

A service (a browser, a server) outlives the call that started it, so the kernel's parent-death signal
cannot tie it to the harness. This small process can: it checks twice a second that the harness (named
by :func:`dicom4qi.process.lifetime.harness_id`, PID and start time) still runs, and when it does not (it was
SIGKILLed), sends SIGTERM and then SIGKILL to each watched process group, and exits. It also exits when
every watched process is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from dicom4qi.process.lifetime import _alive

__all__ = ["main"]


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    harness, pids = args[0], [int(p) for p in args[1:]]
    while any(_exists(p) for p in pids):
        if not _alive(harness):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, sig)
                time.sleep(1.0)
            return 0
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
