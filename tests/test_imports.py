"""The core imports none of the optional stacks (imitation, SB3, MetaDrive, MiniGrid, pygame)."""

import subprocess
import sys


def test_core_import_pulls_no_optional_stack():
    code = ("import sys, gatekit, gatekit.wrappers, gatekit.criteria, gatekit.data, gatekit.runs, gatekit.cli, gatekit.export\n"
            "print(sorted(m for m in ('imitation', 'metadrive', 'minigrid', 'stable_baselines3', 'pygame') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
