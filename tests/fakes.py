"""Misbehaving adapters for the fault tests: each fails in one way a real tool can."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from dicom4qi.adapters.contract import Consumer, Producer, ReadRequest, WriteRequest
from dicom4qi.model.decoded import DecodedWriter
from dicom4qi.model.segment import Segment
from dicom4qi.tools.highdicom.consumer import HighdicomConsumer

FEATURES = HighdicomConsumer.features


class _Fake(Consumer):
    tool = "fake"
    features = FEATURES

    def version(self) -> str | None:
        return "0.0"


class CrashingConsumer(_Fake):
    name = "crash"

    def read(self, request: ReadRequest) -> DecodedWriter:
        os.abort()


class HangingConsumer(_Fake):
    name = "hang"

    def read(self, request: ReadRequest) -> DecodedWriter:
        time.sleep(3600)
        raise AssertionError("unreachable")


class GreedyConsumer(_Fake):
    name = "greedy"

    def read(self, request: ReadRequest) -> DecodedWriter:
        hog = np.ones((64, 1024, 1024, 1024), dtype=np.uint8)  # 64 GiB
        raise AssertionError(f"allocated {hog.nbytes}")


class RaisingConsumer(_Fake):
    name = "raise"

    def read(self, request: ReadRequest) -> DecodedWriter:
        raise ValueError("this SEG is not to my taste")


class _GarbageWriter(DecodedWriter):
    def write(self, path: Path) -> None:
        path.write_bytes(b"\x00garbage, not an npz")


class GarbageConsumer(_Fake):
    name = "garbage"

    def read(self, request: ReadRequest) -> DecodedWriter:
        return _GarbageWriter([], 1, 1)


class LyingConsumer(HighdicomConsumer):
    """Reads with highdicom, then reports every segment empty: a silent wrong answer."""

    name = "liar"

    def read(self, request: ReadRequest) -> DecodedWriter:
        real = super().read(request)
        out = DecodedWriter(real.frame_keys, real.rows, real.columns)
        for s in real.segments:
            out.add_segment(Segment(number=s.number, label=s.label, category=s.category, type=s.type))
        return out


class MissingConsumer(_Fake):
    name = "missing"
    tool = "no-such-tool"

    def version(self) -> str | None:
        return None

    def read(self, request: ReadRequest) -> DecodedWriter:
        raise AssertionError("a missing tool must never be called")


class GarbageProducer(Producer):
    name = "garbage-writer"
    tool = "fake"
    features = FEATURES

    def version(self) -> str | None:
        return "0.0"

    def write(self, request: WriteRequest) -> list[str]:
        request.output.write_bytes(b"this is not DICOM")
        return []


class ExitingProducer(GarbageProducer):
    name = "exit-writer"

    def write(self, request: WriteRequest) -> list[str]:
        os._exit(3)


class BrokenEnvProducer(GarbageProducer):
    """Declares an environment whose requirements cannot be installed."""

    name = "broken-env-writer"
    requirements = "broken_env.requirements.txt"


# --------------------------------------------------------------------------- readers for the consensus tests
from dicom4qi.tools.reference.consumer import ReferenceConsumer  # noqa: E402


class _Clone(ReferenceConsumer):
    """The reference decoder under another name: an independent reader that reads right."""

    tool = "fake"

    def version(self) -> str | None:
        return "0.0"


class CloneA(_Clone):
    name = "clone-a"


class CloneB(_Clone):
    name = "clone-b"


class CloneC(_Clone):
    name = "clone-c"


class CloneD(_Clone):
    name = "clone-d"


class _Dropper(_Clone):
    """Reads right, then loses the first foreground voxel of the lowest-numbered segment: a one-voxel dissent."""

    family = "dropper"

    def read(self, request: ReadRequest) -> DecodedWriter:
        writer = super().read(request)
        assert request.workdir is not None
        writer.write(request.workdir / "_full.npz")  # cut the label maps into crops first
        from dicom4qi.model.decoded import Decoded

        full = Decoded(request.workdir / "_full.npz")
        out = DecodedWriter(full.frame_keys, full.rows, full.columns, fractional=full.fractional)
        for s in full.segments:
            out.add_segment(s)
        out.geometry = full.geometry
        dropped = False
        for number, crop in full:
            data = crop.data.copy()
            if not dropped and number > 0:
                idx = np.argwhere(data)[0]
                data[tuple(idx)] = 0
                dropped = True
            from dicom4qi.model.masks import Crop

            out.set_crop(number, Crop(crop.offset, data))
        full.close()
        (request.workdir / "_full.npz").unlink()
        return out


class Dropper(_Dropper):
    name = "dropper"


class DropperVariant(_Dropper):
    """The dropper called another way: the same code, so the same family and one vote."""

    name = "dropper-variant"


# --------------------------------------------------------------------------- readers that misbehave towards the harness
class TamperingConsumer(_Clone):
    """Truncates the object it was given, then reads it: it must damage nothing for the readers after it."""

    name = "tamper"

    def read(self, request: ReadRequest) -> DecodedWriter:
        data = request.seg.read_bytes()
        request.seg.write_bytes(data[: len(data) // 3])
        raise ValueError("cannot read a truncated object")


class EscapingConsumer(_Clone):
    """Starts a process that leaves the call's process group (setsid) and would run for ten minutes."""

    name = "escape"

    def read(self, request: ReadRequest) -> DecodedWriter:
        import subprocess
        import sys

        assert request.workdir is not None
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        (request.workdir / "escaped.pid").write_text(str(proc.pid))
        if os.environ.get("DICOM4QI_TEST_HANG"):
            time.sleep(3600)
        return super().read(request)


class LimitRaisingConsumer(_Clone):
    """Tries to lift its own memory limit, then to use 3 GiB (the tests give it 2 GiB)."""

    name = "raise-limit"

    def read(self, request: ReadRequest) -> DecodedWriter:
        import resource

        notes = []
        for limits in (
            (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
            (resource.RLIM_INFINITY, resource.getrlimit(resource.RLIMIT_AS)[1]),
        ):
            try:
                resource.setrlimit(resource.RLIMIT_AS, limits)
                notes.append(f"raised to {limits}")
            except (ValueError, OSError) as exc:
                notes.append(f"refused: {exc}")
        hog = np.ones(3 * 2**30, dtype=np.uint8)
        raise AssertionError(f"used {hog.nbytes} bytes; {notes}")


class TempLeavingConsumer(_Clone):
    """Leaves a temporary folder and hangs until it is killed at its time limit."""

    name = "temp-leaver"

    def read(self, request: ReadRequest) -> DecodedWriter:
        import tempfile

        folder = tempfile.mkdtemp(prefix="dicom4qi-test-leaver-")
        assert request.workdir is not None
        (request.workdir / "temp-folder.txt").write_text(folder)
        time.sleep(3600)
        raise AssertionError("unreachable")


class FailingServiceConsumer(_Clone):
    """Needs a service that cannot start: its cells are harness faults, not the tool's."""

    name = "no-service"
    needs_service = True

    def start_service(self, workdir: Path, cache: Path):
        raise RuntimeError("the port the service needs is held by a leftover of an earlier run")


class ServedConsumer(_Clone):
    """Reads right, through a service of its own (a real HTTP server on 127.0.0.1, as a viewer's): a call without
    the service's endpoint, or whose server does not answer, fails."""

    name = "served"
    needs_service = True

    def start_service(self, workdir: Path, cache: Path):
        import socket
        import subprocess
        import sys

        from dicom4qi.adapters.contract import Service

        (workdir / "ok.txt").write_text("served")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}/ok.txt"
        for _ in range(100):
            try:
                import urllib.request

                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        return Service(endpoints={"url": url}, pids=[proc.pid])

    def read(self, request: ReadRequest) -> DecodedWriter:
        import urllib.request

        if not request.service or "url" not in request.service:
            raise RuntimeError("called without its service")
        with urllib.request.urlopen(request.service["url"], timeout=10) as resp:
            assert resp.read() == b"served"
        return super().read(request)


class DiskFillingProducer(Producer):
    """Fills the disk it writes to while a marker file exists (the test's full disk), else writes with highdicom."""

    name = "disk-filler"
    tool = "fake"
    features = FEATURES

    def version(self) -> str | None:
        return "0.0"

    def write(self, request: WriteRequest) -> list[str]:
        marker = os.environ.get("DICOM4QI_TEST_FILL")
        if marker and Path(marker).exists():
            with open(request.output.parent / "filler.bin", "wb") as fh:
                block = b"\0" * 2**20
                while True:
                    fh.write(block)
                    fh.flush()
        from dicom4qi.tools.highdicom.producer import HighdicomProducer

        return HighdicomProducer().write(request)


#: Calls this module has seen in this process (a fork server's children must each start from zero).
CALLS_SEEN = 0


class StateReportingConsumer(_Fake):
    """Changes its process's state (a module global, the environment), then fails saying what it found there
    first: a call forked from a server must see none of an earlier call's changes."""

    name = "state"

    def read(self, request: ReadRequest) -> DecodedWriter:
        import tempfile

        global CALLS_SEEN
        CALLS_SEEN += 1
        leak = os.environ.get("DICOM4QI_TEST_LEAK")
        os.environ["DICOM4QI_TEST_LEAK"] = "set by an earlier call"
        delay = float(os.environ.get("DICOM4QI_TEST_DELAY", "0"))
        time.sleep(delay)
        raise ValueError(
            f"pid={os.getpid()} ppid={os.getppid()} calls={CALLS_SEEN} leak={leak} "
            f"tmp={tempfile.gettempdir()} cwd={os.getcwd()} limit={os.environ.get('DICOM4QI_MEMORY_LIMIT')}"
        )
