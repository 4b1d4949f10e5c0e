"""Doctests of the modules that adapt an optional stack skip where that stack is not installed
(the newest-stack environment has no imitation, MetaDrive, MiniGrid or rliable)."""

import importlib.util

import pytest

# module name part -> the package its doctests need
NEEDS = {"imitation": "imitation", "minigrid": "minigrid", "metadrive": "metadrive", "stats": "rliable"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not isinstance(item, pytest.DoctestItem):
            continue
        for part, package in NEEDS.items():
            module = item.dtest.name.split(".")[:3] if item.dtest is not None else []
            if any(part in m for m in module[1:]) and importlib.util.find_spec(package) is None:
                item.add_marker(pytest.mark.skip(reason=f"needs {package}"))
