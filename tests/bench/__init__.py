"""saynad benchmarks: run with ``make bench``. Not collected by ``make test``."""
