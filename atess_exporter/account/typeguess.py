"""Which device `type` a serial number answers as, when its configured family's path says "not found".

Model names do not always tell the family (an HPS30TL is a string HPS, an HPS30 a
central one), and the cloud answers a right SN on the wrong family's path with
"not found" (the doc's code 400, "not fount"). So a device whose latest-data path
answers "not found" is tried once on each other family's latest path, the sibling
family first (central <-> string HPS); the first that answers names its type.
The poller (once per device) and `probe` use this.
"""

from __future__ import annotations

from typing import Iterable

from atess_exporter.api.client import Answer, ApiError, AtessClient, AtessError, HttpError, NoDataError
from atess_exporter.config import Config

# Envelope codes that mean "no such device here": the doc's 400 "not fount"; 10002/10003
# ("device does not exist", "device SN error") on the sibling vendor platform (NOTES.md).
NOT_FOUND_CODES = frozenset({400, 10002, 10003})
SIBLINGS = {"hps_central": "hps_string", "hps_string": "hps_central", "bcu": "mbms", "mbms": "bcu"}


def is_not_found(exc: BaseException) -> bool:
    """The path exists but does not know this device (or the path itself is unknown: HTTP 404)."""
    if isinstance(exc, HttpError):
        return exc.status == 404
    if isinstance(exc, ApiError):
        text = str(exc.msg).lower()
        return exc.code in NOT_FOUND_CODES or "not found" in text or "not fount" in text or "not exist" in text
    return False


def candidates(family: str, families: Iterable[str]) -> list[str]:
    """The other device families, the sibling first."""
    others = [f for f in families if f != family]
    sibling = SIBLINGS.get(family)
    return sorted(others, key=lambda f: (f != sibling, f))


def answering_family(client: AtessClient, config: Config, sn: str, family: str,
                     families: Iterable[str]) -> tuple[str, Answer | None] | None:
    """(family, answer) of the first other family whose latest path answers for `sn`
    (answer None when it answered "no data"); None when none does. One call per family."""
    for other in candidates(family, families):
        try:
            return other, client.call(config.endpoint(other, "latest"), {"deviceSn": sn}, expect=dict)
        except NoDataError:
            return other, None
        except AtessError:
            continue
    return None
