"""The README's example runs as written."""

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_wrap_your_own_env_example_runs(tmp_path, capsys):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Wrap your own env\s+```python\n(.*?)```", text, flags=re.S).group(1)
    assert len(block.strip().splitlines()) <= 12
    script = tmp_path / "readme_example.py"
    script.write_text(block)
    runpy.run_path(str(script))
    out = capsys.readouterr().out.split()
    assert out[0] in ("True", "False")
