"""Reading and writing DICOM and its neighbours (NRRD, NIfTI exchange folders), within bounds."""
