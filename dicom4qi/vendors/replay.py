"""Producer ``submission:FOLDER``: the SEG objects of a vendor's producer submission, as if written here.

``dicom4qi ingest`` receives a producer submission (checked and copied by
:mod:`dicom4qi.vendors.ingest`) and runs it like any producer: the "write" of a
case copies the vendor's object for that case, then every consumer reads it and
the validator checks it. Nothing is written by the suite; the write step's time
is a file copy and is not reported.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from dicom4qi.adapters.contract import EVERY_FEATURE, Producer, WriteRequest
from dicom4qi.model.protocol import SubmissionDoc

__all__ = ["submitted_producer"]


class _Submitted(Producer):
    folder: ClassVar[Path]

    def _doc(self) -> SubmissionDoc:
        return SubmissionDoc.model_validate_json((self.folder / "submission.json").read_bytes())

    def version(self) -> str | None:
        return self._doc().tool.version

    def write(self, request: WriteRequest) -> list[str]:
        doc = self._doc()
        for entry in doc.entries or []:
            if entry.case == request.case_id and entry.seg is not None:
                src = self.folder / entry.seg
                if src.is_symlink() or not src.is_file():
                    raise FileNotFoundError(f"{entry.seg}: not a regular file in the submission")
                shutil.copyfile(src, request.output)
                return [
                    f"submitted by {doc.vendor}: {doc.tool.name} {doc.tool.version} ({entry.seg}); not written here",
                    *entry.notes,
                ]
        raise FileNotFoundError(f"the submission has no object for {request.case_id}")


def submitted_producer(folder: Path) -> type[Producer]:
    """The producer class of a received producer submission (its folder holds submission.json)."""
    doc = SubmissionDoc.model_validate_json((folder / "submission.json").read_bytes())
    return type(
        "SubmittedProducer",
        (_Submitted,),
        {
            "name": "submission",
            "tool": doc.tool.name,
            "features": EVERY_FEATURE,
            "folder": folder.resolve(),
            "homepage": doc.tool.homepage,
            "__module__": __name__,
        },
    )
