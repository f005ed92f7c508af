"""Tooling, not product: the benchmarks and the demo traffic. Only the CLI imports it, lazily,
and the installed wheel leaves it out (it runs from a checkout).
"""
