"""The data models everything else speaks: cases, truth, decoded form, results, the wire, segments, UIDs."""
