"""Traffic generation: a simulated gateway that writes access-log lines as a real one would,
following the weights the analyzer writes (for ``simulate``, benchmarks and tests).

Must not: be read by the daemon as a source; it generates, it does not ingest.
"""
