"""Benchmarks on the local stack (issue 7): `make bench`, or `python -m bench [--quick]`.

One module per benchmark, each with a `measure(...)` function that the runner (`__main__.py`) and the smoke
test (`tests/test_bench_smoke.py`) call:

  a_ingest    one day collected by the project's collector against a sequential, row-by-row baseline
  b_rescan    the same unchanged day collected again: wall time and documents written
  c_memory    peak RSS of a collecting process for a small and a large day, each in its own process
  d_feed      the OData feed streaming a week through nextLinks against reading the rows straight from
              Cosmos, and under concurrent clients
  e_ratelimit Graph requests per second achieved against the configured limit, and 429s from the simulator

Every figure is measured in two modes side by side, in the same run: `raw` (the local stack as fast as it
answers) and `modelled` (the Graph simulator adds a latency per page and the Cosmos server a delay per
request, as Azure's network would; see `common.Mode`).
"""
