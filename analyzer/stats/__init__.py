"""Pure statistics: histograms, rank tests, rate tests, corrections.

Nothing here reads a clock, a file or a socket; inputs are numbers and arrays, outputs are
frozen results. The rest of the product depends on this package, never the other way round.
"""
