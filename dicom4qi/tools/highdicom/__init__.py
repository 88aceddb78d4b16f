"""highdicom (PyPI): producer and consumer."""
