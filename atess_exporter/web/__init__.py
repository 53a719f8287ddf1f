"""The HTTP side: /metrics, /healthz and the landing page, its connections, TLS and basic auth."""
