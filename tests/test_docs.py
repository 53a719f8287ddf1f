"""The documentation that users read stays true to the code."""

import pathlib
import re

from atess_exporter.cli import build_parser, list_metrics

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_metrics_doc_is_the_current_catalog():
    doc = (ROOT / "docs" / "metrics.md").read_text()
    assert list_metrics() in doc, "docs/metrics.md is stale: regenerate with `make docs`"


def test_readme_first_screen_gives_the_two_commands():
    first_screen = (ROOT / "README.md").read_text().split("---")[0]
    commands = re.findall(r"^make (\w+)", first_screen, flags=re.M)
    assert commands == ["demo", "test"]


def test_every_flag_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    flags = [opt for action in build_parser()._actions for opt in action.option_strings
             if opt.startswith("--") and opt not in ("--help", "--version")]
    missing = [f for f in flags if f"`{f}`" not in readme]
    assert not missing


def test_api_doc_lists_every_default_endpoint():
    """docs/api.md is what users have of the API's facts: it must name every path we call."""
    from pathlib import Path

    from atess_exporter.catalog.endpoints import DEFAULT_ENDPOINTS, status

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    for family, ops in DEFAULT_ENDPOINTS.items():
        for op, path in ops.items():
            row = next((line for line in text.splitlines() if f"| `{family}` | `{op}` | `{path}` |" in line), None)
            assert row is not None, (family, op, path)
            if status(family, op) == "documented":
                assert "documented" in row, row
