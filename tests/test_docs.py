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


def test_relative_links_in_docs_point_to_files():
    """Every relative link and image in README.md and docs/*.md names a file of the repository."""
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+://", target) or target.startswith("#"):
                continue
            if not (doc.parent / target.split("#")[0]).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_custom_gate_of_the_docs_works():
    """docs/wrap-your-env.md's own-gate example, run as written, gates a real env."""
    import numpy as np

    from gatekit import InterventionWrapper
    from gatekit.envs.toy import EchoEnv
    from gatekit.experts.classic import EchoExpert

    text = (ROOT / "docs/wrap-your-env.md").read_text()
    block = re.search(r"### Your own gate.*?```python\n(.*?)```", text, flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "wrap-your-env.md", "exec"), namespace)
    env = EchoEnv()
    env = InterventionWrapper(env, expert=EchoExpert(env=env, action=[0.0]), criterion=namespace["FarFromExpert"](gap=0.3))
    env.reset(seed=0)
    steps = [env.step(np.array([a], np.float32))[4]["gatekit"] for a in (0.1, 0.5, 0.2)]
    assert [g["intervened"] for g in steps] == [False, True, False]
    assert all(g["expert_queried"] for g in steps)  # human-gated: the expert watched every step
