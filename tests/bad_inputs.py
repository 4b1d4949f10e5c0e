"""Bad recipes, each with the words its one-line error must contain (shared by the tests and
``bench/reliability_cases.py``, which counts them)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.recipes import tiny_recipe


def _yaml(**over: Any) -> str:
    return yaml.safe_dump(tiny_recipe(**over), sort_keys=False)


def _laughs() -> list[str]:
    """About 1.3 KB of anchors that expand to 9**9 values: a 'billion laughs'."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return lines


def _alias_bomb() -> str:
    return _yaml() + "bomb:\n" + "".join(f"  {line}\n" for line in _laughs())


def _deep(n: int) -> str:
    return _yaml() + "description: " + "[" * n + "]" * n + "\n"


def _replace(old: str, new: str) -> str:
    text = _yaml()
    assert old in text, old
    return text.replace(old, new, 1)


BAD_RECIPES: list[tuple[str, str | bytes, str]] = [
    # (case, recipe.yaml text, what the one-line error says)
    ("alias bomb (1.3 KB)", _alias_bomb(), "expands to more than 100000 values through its aliases"),
    ("5000-deep nesting", _deep(5000), "nests sections or lists deeper than 64 levels"),
    ("recursive alias", _yaml() + "description: &r [*r]\n", "recursive alias"),
    ("over 1 MiB", _yaml() + "# " + "x" * (1 << 20) + "\n", "more than the 1048576 a recipe may have"),
    ("not text", b"name: tiny\n\xff\xfe\n", "is not a text file"),
    ("name ../..", _replace("name: tiny", "name: ../.."), "'name' must be 1-100 letters"),
    ("name with a NUL", _replace("name: tiny", 'name: "a\\0b"'), "'name' must be 1-100 letters"),
    ("name with a slash", _replace("name: tiny", "name: a/b"), "'name' must be 1-100 letters"),
    ("name like an option", _replace("name: tiny", "name: -rf"), "'name' must be 1-100 letters"),
    ("hidden name", _replace("name: tiny", "name: .x"), "'name' must be 1-100 letters"),
    ("empty name", _replace("name: tiny", "name: ''"), "'name' must be 1-100 letters"),
    ("duplicate key", _yaml() + "seed: 3\n", "key 'seed' appears twice in one section"),
    ("duplicate nested key", _replace("  total_steps: 300", "  total_steps: 300\n  total_steps: 400"),
     "key 'total_steps' appears twice"),
    ("warm-up above the budget", _yaml(budget={"total_steps": 300, "warmup_steps": 500}),
     "'budget.warmup_steps' (500) must be <= 'budget.total_steps' (300)"),
    ("net_arch [0]", _yaml(learner={"id": "sb3-offpolicy", "algo": "dqn", "net_arch": [0]}), "net_arch must be a list of positive layer sizes"),
    ("hidden [0]", _yaml(learner={"id": "mlp-bc", "hidden": [0]}), "hidden must be a list of positive layer sizes"),
    ("seed 2**70", _yaml(seed=2**70), "'seed' must be in [0, 2**63-1]"),
    ("negative seed", _yaml(seed=-1), "'seed' must be in [0, 2**63-1]"),
    ("seed 1.5", _yaml(seed=1.5), "'seed' must be an integer"),
    ("zero budget", _yaml(budget={"total_steps": 0}), "'budget.total_steps' must be >= 1"),
    ("unknown key", _yaml() + "budgt: {}\n", "unknown key 'budgt'; did you mean 'budget'?"),
    ("plugin os:system", _yaml(expert={"id": "os:system"}), "module 'os' is part of Python's standard library"),
    ("unknown env", _yaml(env={"id": "cartpol"}), "unknown env 'cartpol'; did you mean 'cartpole'?"),
    ("not a mapping", "- just\n- a list\n", "must hold a mapping of fields"),
    ("bad YAML", "name: [unclosed\n", "is not valid YAML at line 2"),
]
"""Bad recipes: ``gatekit train RECIPE --dry-run`` must exit 2 with one line containing the text."""

BAD_OPTIONS: list[tuple[str, list[str], str]] = [
    ("--seed 2**70", ["--seed", str(2**70)], "'seed' must be in [0, 2**63-1]"),
    ("--set name=../x", ["--set", "name=../x"], "'name' must be 1-100 letters"),
    ("--set with an alias bomb", ["--set", "description={" + ", ".join(_laughs()) + "}"],
     "expands to more than 100000 values"),
    ("--set budget.warmup_steps above the budget", ["--set", "budget.warmup_steps=301"], "budget.warmup_steps"),
]
"""Bad command-line options on a valid recipe, same contract."""
