"""Simulator of the ATESS cloud OpenAPI, for the exporter's demo mode and tests.

Loopback only (127.0.0.1). See ``server`` for the HTTP behaviour and ``physics``
for the payloads; each module says what follows the vendor doc and what is assumed.
"""

from atess_exporter.simulator.device import SimDevice, demo_devices, fleet_of
from atess_exporter.simulator.server import FAULT_KINDS, Reply, Request, Simulator, latest_handler

__all__ = ["FAULT_KINDS", "Reply", "Request", "SimDevice", "Simulator", "demo_devices", "fleet_of", "latest_handler"]
