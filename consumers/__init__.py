"""Consumers: one small adapter module per tool that reads DICOM SEG."""
