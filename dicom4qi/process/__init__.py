"""Processes the harness starts: bounded children, their marks, services and their watchdog."""
