"""What a device's model name tells us: its rated power and its field variant.

Model names come from the vendor (docs/api.md, "Model ratings"; the Modbus device type codes):
central HPS30/50/100/120/150/250 and HPS100HV/HPS150HV, string types such as
HPS10KTL, HPS7500TL or HPS3500TLS, PCS50..PCS630 (with TL/U suffixes),
PBD250/PBD350. BMS units (BCU, MBMS) carry no power rating in their name.

The rating bounds what is physically possible (plausibility ranges, lifetime
counter jumps); None means "unknown", and callers must then not reject a
value for being too large.
"""

from __future__ import annotations

import re

# HPS150, HPS100HV, HPS10KTL, HPS7500TLS, PCS250U, PBD350 ...
_MODEL = re.compile(r"^(HPS|PCS|PBD)\s*-?\s*(\d+(?:\.\d+)?)\s*(K?)\s*(HV|TLS|TL|U)?\b", re.IGNORECASE)


def rated_power_watts(model: str | None) -> float | None:
    """The nominal power in watts a model name states, or None when it states none.

    A number with a K (HPS10KTL) is kW; a bare number of 1000 or more
    (HPS7500TL, HPS3500TLS) is W; a smaller bare number (HPS150, PCS630) is kW.
    """
    if not model:
        return None
    match = _MODEL.match(model.strip())
    if match is None:
        return None
    number = float(match.group(2))
    if match.group(3) or number < 1000:
        number *= 1000.0
    return number if number > 0 else None
