"""Traffic routers: where weights are read and written (a manifest file, a cluster object)."""
