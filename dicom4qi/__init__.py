"""dicom4qi: the DICOM Segmentation interoperability conformance suite (the harness)."""

__version__ = "0.1.0"
