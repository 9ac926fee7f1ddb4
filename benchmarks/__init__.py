"""interlock's benchmark suite, run as `interlock bench` (docs/benchmarks.md)."""
