"""Access events: gateway log lines into columns, the one currency of the pipeline.

``lineparser`` reads one line at a time (any field map, every rejection reason),
``batchparser`` a batch at once into numpy columns (the per-line parser decides every line it
is unsure of), ``ruleset`` parses with each field map of a rule set and merges, ``columns``
holds the result, ``units`` the conversions and rules both parsers share, ``access`` the event
of one request (for tests and the traffic generator) and the parse counters.

Must not: know about rollouts, windows or transports.
"""
