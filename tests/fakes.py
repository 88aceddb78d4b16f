"""Misbehaving adapters for the fault tests: each fails in one way a real tool can."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from conformance.adapter import Consumer, Producer, ReadRequest, WriteRequest
from conformance.decoded import DecodedSegment, DecodedWriter
from consumers.highdicom import HighdicomConsumer

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
            out.add_segment(DecodedSegment(number=s.number, label=s.label, category=s.category, type=s.type))
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
from consumers.reference import ReferenceConsumer  # noqa: E402


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
        writer.write(request.workdir / "_full.npz")  # cut the label maps into crops first
        from conformance.decoded import Decoded

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
            from conformance.masks import Crop

            out.set_crop(number, Crop(crop.offset, data))
        full.close()
        (request.workdir / "_full.npz").unlink()
        return out


class Dropper(_Dropper):
    name = "dropper"


class DropperVariant(_Dropper):
    """The dropper called another way: the same code, so the same family and one vote."""

    name = "dropper-variant"
