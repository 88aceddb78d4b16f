"""pydicom-seg-rb 1.0.0, the maintained fork of pydicom-seg for pydicom 3 and numpy 2: producer and consumer.

The fork keeps pydicom-seg's API under the import name ``pydicom_seg_rb``, so its adapters are pydicom-seg's,
run in the suite's own environment (it installs beside highdicom) instead of pydicom-seg's pinned old one.
"""
