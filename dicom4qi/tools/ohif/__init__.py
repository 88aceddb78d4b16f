"""OHIF (npm @ohif/app) in Debian's chromium with Orthanc: consumer."""
