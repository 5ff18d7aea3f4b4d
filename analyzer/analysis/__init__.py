"""Pure analysis: per-step windows of access events, checks on them, and the verdict.

Nothing here reads a clock or does I/O; the caller passes the events and the time.
"""
