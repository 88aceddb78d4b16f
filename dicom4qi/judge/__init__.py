"""Judging what tools did: comparison with the truth, what an object holds, consensus, validation, known issues."""
