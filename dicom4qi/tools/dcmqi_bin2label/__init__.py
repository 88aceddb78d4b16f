"""dcmqi's ``bin2labelsegimage`` as a producer of its own: every label map made from a BINARY SEG."""
