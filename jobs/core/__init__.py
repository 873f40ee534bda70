"""The pure core: plans from plain data, imports nothing outside itself."""
