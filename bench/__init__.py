"""chatroute's benchmark suite; run it with C{bench/run} (see docs/performance.md)."""
