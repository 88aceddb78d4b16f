"""The dicom4qi command line."""
