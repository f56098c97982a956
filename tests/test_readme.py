"""The README's plug-in example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_plugin_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "HarmlessTransfer(" in b)
    exec(compile(example, "README.md", "exec"), {})
    assert "barrier_active" in capsys.readouterr().out
