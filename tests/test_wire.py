"""The wire between the harness and its children: typed calls and replies, checked on both ends, with schemas."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import jsonschema
import pytest

from dicom4qi.model import wire
from dicom4qi.model.wire import (
    BaselineCall,
    Failure,
    Header,
    InfoCall,
    InspectCall,
    InspectReply,
    ReadCall,
    ReadReply,
    ScanReply,
    WireError,
    parse_call,
    parse_reply,
)
from dicom4qi.process.sandbox import run_child

SCHEMAS = Path(__file__).resolve().parent.parent / "reports" / "schema"

CALLS: list[wire.Call] = [
    InfoCall(role="consumer", adapter="reference"),
    wire.WriteCall(adapter="highdicom", case_file="/c.toml", case_root="/cases", truth_dir="/t", output="/o/seg.dcm"),
    ReadCall(adapter="ohif", seg="/s.dcm", sources=["/a.dcm", "/b.dcm"], output="/o/d.npz", service={"netns": "/x"}),
    wire.StartCall(adapter="ohif", workdir="/w", cache="/c"),
    InspectCall(seg="/s.dcm"),
    wire.ValidateCall(seg="/s.dcm", workdir="/w", timeout_s=30),
    wire.ScanCall(folder="/wild"),
    BaselineCall(action="read", format="nifti", truth_dir="/t", path="/p.nii.gz", reader="nibabel", bench=True),
    wire.ExchangeCall(folder="/x", sources=["/a.dcm"], output="/o.npz"),
]
REPLIES: list[tuple[str, wire.Reply | Failure]] = [
    ("info", wire.InfoReply(name="reference", role="consumer", tool="dicom4qi", features=["binary"])),
    ("write", wire.WriteReply(notes=["wrote it"])),
    ("read", ReadReply(notes=[], read_s=0.25, peak_rss_mb=81.5)),
    ("start", wire.StartReply(endpoints={"dicomweb": "http://127.0.0.1:8042"}, pids=[12, 13])),
    ("inspect", InspectReply(header=Header(sop_class_uid="1.2", segment_numbers=[1, 2], frames=4))),
    ("validate", wire.ValidateReply(kind="ok", raw="Warning - x", seconds=0.5, exit_code=0)),
    (
        "scan",
        ScanReply(
            objects=[wire.FoundObject(id="a", path="/a", sources=[], missing=["1.2"], features=[], labelmap=False)]
        ),
    ),
    ("baseline", wire.BaselineReply(seconds=1.0, shape=[2, 3, 4], voxels=7)),
    ("exchange", wire.ExchangeReply(notes=["n"])),
    ("read", Failure(error_type="ValueError", message="bad", traceback="Traceback ...", memory=False)),
]


def _schema(name: str) -> dict[str, object]:
    schema: dict[str, object] = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return schema


def test_every_operation_has_a_call_and_a_reply_that_round_trip() -> None:
    assert {c.op for c in CALLS} == set(wire.REPLIES) == {op for op, _ in REPLIES}
    for call in CALLS:
        assert parse_call(json.loads(wire.dump(call))) == call
    for op, reply in REPLIES:
        assert parse_reply(op, json.loads(wire.dump(reply))) == reply


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"op": "explode"}, "unknown operation 'explode'"),
        ({"role": "consumer"}, "unknown operation None"),
        ({"op": "info", "role": "consumer"}, "missing field(s) adapter"),
        ({"op": "info", "role": "consumer", "adapter": "x", "extra": 1}, "unknown field(s) extra"),
        ({"op": "info", "role": "validator", "adapter": "x"}, "is not one of"),
        ({"op": "read", "adapter": "x", "seg": "s", "sources": "a.dcm", "output": "o"}, "expected a list"),
        ({"op": "read", "adapter": "x", "seg": "s", "sources": [1], "output": "o"}, "read.sources[0]: expected str"),
        ({"op": "validate", "seg": "s", "workdir": "w", "timeout_s": "30"}, "expected a number"),
        ({"op": "validate", "seg": "s", "workdir": "w", "timeout_s": True}, "expected a number"),
        ({"op": "read", "adapter": "x", "seg": "s", "sources": [], "output": "o", "service": {"a": 1}}, "service.a"),
    ],
)
def test_a_call_out_of_model_is_refused_with_where_it_is_wrong(data: object, why: str) -> None:
    with pytest.raises(WireError, match=None) as info:
        parse_call(data)
    assert why in str(info.value)
    if isinstance(data, dict) and data.get("op") in wire.REPLIES:  # the generated schema refuses it too
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, _schema("wire-call.schema.json"))


def test_a_reply_out_of_model_is_refused() -> None:
    with pytest.raises(WireError, match="expected an integer"):
        parse_reply("inspect", {"ok": True, "header": {"frames": 2.5}})
    with pytest.raises(WireError, match="missing field"):
        parse_reply("read", {"ok": False, "message": "no type"})
    with pytest.raises(WireError, match="unknown field"):
        parse_reply("write", {"ok": True, "notes": [], "voxels": 3})


def test_the_generated_schemas_are_current_and_accept_what_the_models_write() -> None:
    generated = wire.schema_texts()
    for name, text in generated.items():
        assert (SCHEMAS / name).read_text(encoding="utf-8") == text, f"{name} is stale: run `dicom4qi schema`"
    for call in CALLS:
        jsonschema.validate(json.loads(wire.dump(call)), _schema("wire-call.schema.json"))
    for _, reply in REPLIES:
        jsonschema.validate(json.loads(wire.dump(reply)), _schema("wire-reply.schema.json"))


def test_a_real_child_answers_an_inspect_call_with_a_typed_header(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")
    assert isinstance(ct, str)
    out = run_child(InspectCall(seg=ct), tmp_path / "call", timeout_s=120, memory_mb=2048)
    assert out.kind == "ok", out.message
    header = out.expect(InspectReply).header
    assert header.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage: not a SEG, said by the header
    assert header.segment_numbers == [] and header.frames is None
    assert out.peak_rss_mb > 0
    with pytest.raises(TypeError, match="expected a ReadReply"):
        out.expect(ReadReply)


def test_a_child_that_answers_out_of_model_is_an_error_of_the_suite(tmp_path: Path) -> None:
    fake = tmp_path / "python"  # stands in for an environment's interpreter; answers like an older child would
    fake.write_text('#!/bin/sh\nprintf \'{"ok": true, "notes": "one note", "extra": 1}\' > response.json\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    call = ReadCall(adapter="reference", seg="/s.dcm", sources=[], output=str(tmp_path / "d.npz"))
    out = run_child(call, tmp_path / "call", timeout_s=30, memory_mb=None, python=str(fake), env=dict(os.environ))
    assert out.kind == "error"
    assert "does not fit the wire (a fault of the suite)" in out.message
    assert "unknown field(s) extra" in out.message
