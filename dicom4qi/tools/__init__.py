"""The tools under test: one folder per tool with its producer and consumer sides, pins and notes."""
