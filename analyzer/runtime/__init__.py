"""Runtime: wires rules, sources, routers and notifiers around the pure core."""
