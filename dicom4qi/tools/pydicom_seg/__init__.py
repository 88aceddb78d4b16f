"""pydicom-seg 0.4.1, in its own environment: producer and consumer."""
