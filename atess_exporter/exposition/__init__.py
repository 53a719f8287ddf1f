"""The store as Prometheus text: the collectors, and the /metrics body rendered in every
format a scraper negotiates from pieces cached per device."""
