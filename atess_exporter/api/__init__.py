"""The ATESS OpenAPI over HTTP: one bounded call, its envelope checked, typed errors,
and the exporter's own view of those calls (requests by outcome, latency)."""
