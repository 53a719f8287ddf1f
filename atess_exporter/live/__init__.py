"""The live side: the poller that calls the API on each device's schedule, and the store
of the latest readings that every scrape reads (never the API)."""
