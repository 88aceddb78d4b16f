"""The suite's own SEG writer and independent decoder (pydicom and numpy only)."""
