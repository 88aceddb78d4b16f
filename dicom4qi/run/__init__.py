"""The flows of a run: the matrix of writes and reads, the negative and external flows, bench, plan, combine."""
