"""What a device reports, made into samples: a payload through the catalog, lifetime
counters kept believable, settings split into numbers and text. Shared by the live
poller and the history backfill, so both give the same series from the same row."""
