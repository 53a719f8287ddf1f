"""Prometheus exporter for the ATESS cloud OpenAPI."""

__version__ = "0.1.0"
