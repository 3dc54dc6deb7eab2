"""Benchmarks of imp_keras: accuracy at equal budget, training overhead, selection speed (see BENCHMARKS.md)."""
