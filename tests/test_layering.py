"""The package's dependency order, as docs/architecture.md states it, checked on the code.

Every ``import`` in ``gatekit/`` (function-level, lazy ones included: they are dependencies
too) is read from the source; each module belongs to a *part* (a subpackage or a top-level
module), and a part may import only the parts listed for it below. Optional stacks (imitation,
stable-baselines3, MetaDrive, MiniGrid) may be imported only by the parts that adapt them,
and ``import gatekit`` loads none of them (``tests/test_imports.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "gatekit"

CORE = {"errors", "types", "validate", "schedules", "policies", "nets", "data", "registry", "config",
        "yaml_safety", "arguments"}
# part -> the parts it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "types": set(),
    "validate": set(),
    "nets": {"validate"},
    "schedules": {"types", "validate", "data"},
    "policies": {"errors"},
    "data": {"errors", "types"},
    "registry": {"errors", "criteria", "experts", "learners"},  # the role base classes, resolved lazily
    "yaml_safety": {"errors"},
    "arguments": {"errors"},
    "config": {"errors", "yaml_safety", "arguments"},
    "progress": set(),
    "plots": {"runs"},  # a run's plots read its RunResult
    "criteria": CORE,
    "learners": CORE | {"export"},
    "experts": CORE | {"envs"},  # an expert may read its simulator's privileged state
    "envs": CORE,
    "wrappers": CORE | {"criteria", "experts"},
    "evaluation": CORE | {"envs", "experts", "processes"},
    "check": CORE | {"runs"},
    "export": CORE,
    "provenance": set(),  # files, versions, git: the standard library only
    "processes": set(),  # helper processes deaf to Ctrl-C: the standard library only
    "runs": CORE | {"criteria", "learners", "experts", "envs", "wrappers", "evaluation", "progress", "plots",
                    "components", "provenance", "processes"},
    "compare": CORE | {"runs", "progress", "plots", "components", "processes"},
    "expert_training": CORE | {"envs", "experts", "runs", "evaluation", "progress"},
    "components": CORE | {"criteria", "learners", "envs", "experts"},  # every component's options (show, docs)
    "integrations": CORE | {"criteria", "wrappers"},  # gatekit inside other libraries' loops (SB3's learn)
    "cli": None,  # type: ignore[dict-item]  # the front end may import anything
}
OPTIONAL = {"imitation", "stable_baselines3", "metadrive", "minigrid", "ray", "pygame", "rliable", "wandb", "minari"}
# parts that adapt an optional stack; `import gatekit` itself must not load one (test_imports.py)
ADAPTERS = {"learners", "experts", "envs", "expert_training", "compare", "cli", "wrappers", "runs", "export",
            "integrations"}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) of every import in ``path``, function-level ones included."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        out += [(name, node.lineno) for name in names]
    return out


def _modules() -> list[tuple[str, Path]]:
    mods = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        mods.append((".".join(rel.parts).removesuffix(".__init__"), path))
    return mods


def test_every_part_is_known():
    parts = {_part(m) for m, _ in _modules()} - {"__init__"}
    assert parts <= set(ALLOWED), f"add {sorted(parts - set(ALLOWED))} to the layering rules (and the docs)"


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_follow_the_layering(module, path):
    mine = _part(module)
    allowed = ALLOWED.get(mine)
    for name, line in _imports(path):
        root = name.split(".")[0]
        if root == "gatekit":
            if allowed is None or name == "gatekit":
                continue
            theirs = _part(name)
            assert theirs == mine or theirs in allowed, \
                f"{path.relative_to(ROOT.parent)}:{line} imports {name}: {mine} may import only {sorted(allowed)}"
        elif root in OPTIONAL:
            assert mine in ADAPTERS, f"{path.relative_to(ROOT.parent)}:{line}: {mine} must not import {root}"


def test_criteria_never_import_learners():
    """The one rule the old layout broke (criteria/aim.py imported learners/mlp.py)."""
    for path in (ROOT / "criteria").rglob("*.py"):
        for name, line in _imports(path):
            assert not name.startswith("gatekit.learners"), f"{path.name}:{line} imports {name}"
