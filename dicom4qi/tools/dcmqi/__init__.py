"""dcmqi (the PyPI wheel's static binaries): producer and consumer, and bin2labelsegimage as a producer of its own."""
