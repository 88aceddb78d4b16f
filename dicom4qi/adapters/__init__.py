"""The adapter contract, its registry, the child side of a call, environments and executable adapters."""
