"""``clicktrail bench``: throughput measured as ratios against bare baselines run alongside.

Absolute numbers depend on the machine; a ratio against a baseline measured in the same run
(a bare Litestar handler for HTTP, raw ``sqlite3.executemany`` for the worker) does not, so the
figures can be compared across machines and over time (docs/benchmarks.md).
"""
