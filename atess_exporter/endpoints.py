"""API paths per device family and operation.

Only the HPS paths are confirmed (the vendor doc and working client code, see
NOTES.md); every path can be overridden under `endpoints:` in the config.
"""

OPERATIONS = ("latest", "history", "info", "list", "settings")

DEFAULT_ENDPOINTS: dict[str, dict[str, str]] = {
    "hps_central": {
        "latest": "/api/v1/hps/data-last",       # confirmed: vendor doc
        "history": "/api/v1/hps/data-list",      # confirmed: client code
    },
}
