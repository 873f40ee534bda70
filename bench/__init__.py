"""Benchmark of the pass reconciler against the local stand-ins (`python -m bench`).

Not part of the product and not part of the test suite: it generates worlds, runs
`python -m jobs run` (and the naive baseline in `bench.naive`) as subprocesses against
the Stripe and Sanity stand-ins, and prints one JSON line per case plus a summary table.
"""
