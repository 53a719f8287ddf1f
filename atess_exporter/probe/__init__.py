"""`atess-exporter probe`: check a live account endpoint by endpoint, and the redacted
recordings of its answers (`--save`) that also serve as test fixtures."""
