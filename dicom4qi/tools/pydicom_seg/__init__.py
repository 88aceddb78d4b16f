"""pydicom-seg 0.4.1, in its own environment, and its maintained fork pydicom-seg-rb 1.0.0 (the same adapters on the
fork's module, in the suite's environment): producers and consumers."""
