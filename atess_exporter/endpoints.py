"""API paths per device family and operation.

Only the HPS latest/history paths are confirmed (the vendor doc and working
client code, see NOTES.md); every other path is an ASSUMPTION by analogy
(the vendor doc's table of contents lists these operations for every family,
not their paths). Every path can be overridden under `endpoints:` in the config.

Device families are the catalog's (one YAML per family in catalog/); `plant`
and `datalog` are API objects with only `list` and `info`, not device types.
"""

OPERATIONS = ("latest", "history", "info", "list", "settings")

# Path prefix per device family for the assumed paths.
_PREFIX = {"pcs": "/api/v1/pcs", "pbd": "/api/v1/pbd", "bcu": "/api/v1/bcu", "mbms": "/api/v1/mbms"}

DEFAULT_ENDPOINTS: dict[str, dict[str, str]] = {
    "hps_central": {
        "latest": "/api/v1/hps/data-last",       # confirmed: vendor doc
        "history": "/api/v1/hps/data-list",      # confirmed: client code
        "info": "/api/v1/hps/info",              # assumed
        "list": "/api/v1/hps/list",              # assumed
        "settings": "/api/v1/hps/setting",       # assumed
    },
    "hps_string": {
        "latest": "/api/v1/hps/data-last-small",   # confirmed: client code
        "history": "/api/v1/hps/data-list-small",  # confirmed: client code
        "info": "/api/v1/hps/info-small",          # assumed ("-small" like the confirmed ones)
        "list": "/api/v1/hps/list-small",          # assumed
        "settings": "/api/v1/hps/setting-small",   # assumed
    },
    # assumed, all of them: the HPS paths with the family's own prefix
    **{
        family: {
            "latest": f"{prefix}/data-last",
            "history": f"{prefix}/data-list",
            "info": f"{prefix}/info",
            "list": f"{prefix}/list",
            "settings": f"{prefix}/setting",
        }
        for family, prefix in _PREFIX.items()
    },
    # not device types: only list and info (assumed paths)
    "plant": {"list": "/api/v1/plant/list", "info": "/api/v1/plant/info"},
    "datalog": {"list": "/api/v1/datalog/list", "info": "/api/v1/datalog/info"},
}

# API objects that are not device families (no catalog, no device `type:`).
NON_DEVICE_FAMILIES = ("plant", "datalog")
