"""Event sources: files and stdin (embedded, replay), the simulated gateway; Kafka later."""
