"""One pass and its pieces: read, plan, write, record; the composition of the adapters."""
