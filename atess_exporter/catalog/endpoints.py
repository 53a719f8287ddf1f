"""API paths per device family and operation, and what we know of each.

The vendor's doc (see docs/api.md) documents these paths; every other one is
ASSUMED, following the documented patterns (`/api/v1/bms/...` for BCU and
MBMS, `big-`/`small-` for central and string HPS, `base-info/list` keyed by
the datalogger SN for device lists). Every path can be overridden under
`endpoints:` in the config, and `atess-exporter probe` tries the ALTERNATIVES
below when a configured path answers 404 or an error code.

Device families are the catalog's (one YAML per family in catalog/); `plant`
and `datalog` are API objects with only `list` and `info`, not device types.
"""

from __future__ import annotations

from datetime import date, datetime, time

OPERATIONS = ("latest", "history", "info", "list", "settings")

DEFAULT_ENDPOINTS: dict[str, dict[str, str]] = {
    "hps_central": {
        "latest": "/api/v1/hps/data-last",               # documented
        "history": "/api/v1/hps/data-list",              # documented
        "info": "/api/v1/hps/big-base-info",             # assumed
        "list": "/api/v1/hps/big-base-info/list",        # assumed (pattern of the BCU list)
        "settings": "/api/v1/hps/big-setting",           # documented
    },
    "hps_string": {
        "latest": "/api/v1/hps/data-last-small",         # documented
        "history": "/api/v1/hps/data-list-small",        # public client code
        "info": "/api/v1/hps/small-base-info",           # assumed
        "list": "/api/v1/hps/small-base-info/list",      # assumed
        "settings": "/api/v1/hps/small-setting",         # documented
    },
    "pcs": {
        "latest": "/api/v1/pcs/data-last",               # assumed (pattern of PBD)
        "history": "/api/v1/pcs/data-list",              # assumed
        "info": "/api/v1/pcs/base-info",                 # assumed
        "list": "/api/v1/pcs/base-info/list",            # assumed
        "settings": "/api/v1/pcs/setting",               # assumed
    },
    "pbd": {
        "latest": "/api/v1/pbd/data-last",               # documented
        "history": "/api/v1/pbd/data-list",              # assumed
        "info": "/api/v1/pbd/base-info",                 # assumed
        "list": "/api/v1/pbd/base-info/list",            # assumed
        "settings": "/api/v1/pbd/setting",               # assumed
    },
    "bcu": {
        "latest": "/api/v1/bms/bcu-data-last",           # assumed (bms/<unit>-... pattern)
        "history": "/api/v1/bms/bcu-data-list",          # assumed
        "info": "/api/v1/bms/buc-base-info",             # assumed (the list's path without /list)
        "list": "/api/v1/bms/buc-base-info/list",        # documented ("buc" is the vendor's spelling)
        "settings": "/api/v1/bms/bcu-setting",           # documented
    },
    "mbms": {
        "latest": "/api/v1/bms/mbms-data-last",          # assumed
        "history": "/api/v1/bms/mbms-data-list",         # assumed
        "info": "/api/v1/bms/mbms-base-info",            # assumed
        "list": "/api/v1/bms/mbms-base-info/list",       # assumed
        "settings": "/api/v1/bms/mbms-setting",          # assumed
    },
    # not device types: only list and info (assumed paths)
    "plant": {"list": "/api/v1/plant/list", "info": "/api/v1/plant/info"},
    "datalog": {"list": "/api/v1/datalog/list", "info": "/api/v1/datalog/info"},
}

# (family, operation) pairs whose default path the vendor's doc shows; the rest are assumed.
DOCUMENTED = frozenset({
    ("hps_central", "latest"), ("hps_central", "history"), ("hps_central", "settings"),
    ("hps_string", "latest"), ("hps_string", "settings"), ("pbd", "latest"),
    ("bcu", "list"), ("bcu", "settings"),
})

# Other spellings worth one try each when a path answers 404 or an error code
# (`probe`): the older "by analogy" paths, and the documented patterns applied
# the other way round.
ALTERNATIVES: dict[tuple[str, str], tuple[str, ...]] = {
    ("hps_central", "list"): ("/api/v1/hps/base-info/list", "/api/v1/hps/list"),
    ("hps_central", "info"): ("/api/v1/hps/base-info", "/api/v1/hps/info"),
    ("hps_string", "history"): ("/api/v1/hps/data-list",),
    ("hps_string", "list"): ("/api/v1/hps/base-info/list", "/api/v1/hps/list-small"),
    ("hps_string", "info"): ("/api/v1/hps/base-info", "/api/v1/hps/info-small"),
    **{(f, "latest"): (f"/api/v1/{p}/data-last",) for f, p in (("bcu", "bcu"), ("mbms", "mbms"))},
    **{(f, "history"): (f"/api/v1/{p}/data-list",) for f, p in (("bcu", "bcu"), ("mbms", "mbms"))},
    ("bcu", "list"): ("/api/v1/bms/bcu-base-info/list", "/api/v1/bcu/list"),
    ("bcu", "info"): ("/api/v1/bms/bcu-base-info",),
    ("bcu", "settings"): ("/api/v1/bms/buc-setting",),
    ("mbms", "list"): ("/api/v1/mbms/list",),
    ("mbms", "settings"): ("/api/v1/mbms/setting",),
    **{(f, "list"): (f"/api/v1/{f}/list",) for f in ("pcs", "pbd")},
    **{(f, "settings"): (f"/api/v1/{f}/setting", f"/api/v1/{f}/big-setting") for f in ("pcs", "pbd")},
    ("datalog", "list"): ("/api/v1/datalog/base-info/list", "/api/v1/dataLog/list"),
    ("plant", "list"): ("/api/v1/plant/base-info/list",),
}

# API objects that are not device families (no catalog, no device `type:`).
NON_DEVICE_FAMILIES = ("plant", "datalog")

# Query parameter that keys each list: device lists hang on a datalogger
# (documented for the BCU list), datalogger lists on a plant (assumed).
LIST_KEY = {"datalog": "plantId", **{f: "dataLogSn" for f in DEFAULT_ENDPOINTS if f not in NON_DEVICE_FAMILIES}}


def history_dates(first: date, last: date, fmt: str) -> dict[str, str]:
    """startDate/endDate of a history call covering whole days, as the doc shows them:
    `first 00:00:00` .. `last 23:59:59` (in `fmt`, `history.date_format`)."""
    return {"startDate": datetime.combine(first, time(0, 0, 0)).strftime(fmt),
            "endDate": datetime.combine(last, time(23, 59, 59)).strftime(fmt)}


def status(family: str, operation: str) -> str:
    return "documented" if (family, operation) in DOCUMENTED else "assumed"
