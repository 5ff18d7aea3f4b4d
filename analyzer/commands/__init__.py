"""The commands behind cli.py, one module each, imported only when chosen; report.py is the
terminal output they share.

Must not: be imported by anything below the command line.
"""
