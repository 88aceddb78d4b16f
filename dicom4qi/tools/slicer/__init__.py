"""3D Slicer, headless, where installed: consumer."""
