"""Local stand-ins for the services the reconciler talks to, and the world generator.

Test and demo only: nothing in `jobs` imports this package.
"""
