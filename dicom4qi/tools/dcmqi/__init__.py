"""dcmqi (the PyPI wheel's static binaries): producer and consumer."""
