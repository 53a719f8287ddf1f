"""History backfill: the ATESS history endpoint into one OpenMetrics file.

    atess-exporter backfill --config.file config.yaml --from 2024-05-01 --to 2024-05-31
    promtool tsdb create-blocks-from openmetrics history.om ./blocks

The rows of the history endpoint (one per 5-minute slot) go through the same
catalog (`readings.payload_samples`) and the same lifetime-counter guard
(`readings.counterguard.guard_samples`) as the live exporter, so the file holds exactly
the live exporter's metric names, labels and scaling, each sample stamped with
the row's own `time` (fallback `recordTime`, the older spelling) read in the device's time zone.

Dates: `--from` and `--to` are plant-local days and BOTH INCLUSIVE, like the
API's startDate/endDate. `--to` defaults to yesterday (in `atess.timezone`).

Rate limit: the API allows one call per device per endpoint every 5 minutes
(docs/api.md), and every page of history is a call. Calls to one device are
therefore spaced by `--call-interval` (default `poll.interval_seconds`, 300 s),
measured from the end of the previous call; different devices proceed in
parallel (`--concurrency`, default `poll.concurrency`). One day of 5-minute rows
is 288 rows, i.e. 3 pages of 100: about 15 minutes per device-day at 300 s.

Resume: the work directory `<output>.parts/` keeps one part file per finished
(device, window), written atomically, and per device a state file (next day to
fetch, the finished parts, the counter guard's full state) replaced atomically
after the part. A run that is interrupted (Ctrl-C, crash, failed windows)
continues where it stopped when run again with the same --from/--to and
--output: finished windows are not fetched again and the guard resumes exactly
where it was, so the result equals an uninterrupted run. When a device's window
keeps failing, that device stops there (its later windows would be guarded out
of time order) and the others go on; the output is written with what was
fetched, the work directory is kept and the exit code is 1: run again to retry.
On full success the work directory is removed.

Exit codes: 0 done; 1 configuration error or some windows failed; 2 usage
error; 130 interrupted (resume by running the same command again).
"""

# The modules, in the order a run goes through them: cli (arguments, exit codes)
# -> run (the orchestration) -> fetch (one window's pages, paced by pacing) ->
# render (rows to sample lines) -> workdir (parts and state, for resuming) ->
# merge (the final file). The package itself offers what the command line and
# the tests use.

from atess_exporter.backfill.cli import build_parser, known_devices, main
from atess_exporter.backfill.fetch import calls_for_rows, windows

__all__ = ["build_parser", "calls_for_rows", "known_devices", "main", "windows"]
