"""Online garbage collection (issue #7): mark in SQL, sweep under pins, while pushes go on.

See ``docs/gc.md`` for the design and why each race with a push is safe.
"""
