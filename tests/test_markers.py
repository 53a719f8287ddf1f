"""A test that needs promtool, prometheus or amtool says so with its marker, so that
`pytest -m "not prometheus"` leaves out exactly the tests that would skip or fail."""

import ast
from pathlib import Path

from support import TOOL_MARKERS

TESTS = Path(__file__).resolve().parent


def _marks(decorators) -> set[str]:
    """Marker names in decorators or a pytestmark value (pytest.mark.NAME, with or without a call)."""
    out = set()
    for node in decorators:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Attribute) and sub.value.attr == "mark":
                out.add(sub.attr)
    return out


def test_every_test_that_needs_a_tool_carries_its_marker():
    unmarked = []
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_marks = _marks([n.value for n in tree.body if isinstance(n, ast.Assign)
                               and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)])
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            needed = {call.args[0].value for call in ast.walk(node)
                      if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "require_tool"
                      and call.args and isinstance(call.args[0], ast.Constant) and call.args[0].value in TOOL_MARKERS}
            missing = needed - module_marks - _marks(node.decorator_list)
            if missing:
                unmarked.append(f"{path.name}::{node.name} needs @pytest.mark.{', '.join(sorted(missing))}")
    assert not unmarked, unmarked
