"""Producers: one small adapter module per tool that writes DICOM SEG."""
