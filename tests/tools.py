"""External tools for tests: skip on a laptop without them, fail in CI.

CI sets ATESS_REQUIRE_PROMTOOL=1 (.ci/run installs Debian's prometheus,
prometheus-alertmanager, chromium and chromium-driver), so a missing tool there is a
failure, not a skip.
"""

import os
import shutil
import subprocess

import pytest


def require_tool(name: str, package: str = "prometheus prometheus-alertmanager") -> str:
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("ATESS_REQUIRE_PROMTOOL") == "1":
        pytest.fail(f"{name} is required (ATESS_REQUIRE_PROMTOOL=1) but not on PATH")
    pytest.skip(f"{name} not installed (apt-get install {package})")


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server the test started; kill it if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
