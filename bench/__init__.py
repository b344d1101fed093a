"""`make bench`: the project's benchmarks, side by side with what users would pick instead."""
