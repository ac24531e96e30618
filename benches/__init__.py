"""`python -m benches`: the engine measured beside plain-Python baselines, in one run.

Groups (one module each): `core` (the Rust core through PyO3), `ops` (the `wf` operations inside
a running task), `steps` (durable child steps), `concurrency` (threads on one store, and queued
workers), `scale` (long workflows). `measure` repeats and summarises, `report` prints the table
and writes the JSON and the chart. A benchmark measures; it never asserts a time.
"""
