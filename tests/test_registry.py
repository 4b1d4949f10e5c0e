"""Recipe ids name components of their role only: no recipe runs an arbitrary callable."""

from pathlib import Path

import gymnasium as gym
import pytest
from click.testing import CliRunner

from gatekit.cli import main
from gatekit.config import Component, build
from gatekit.criteria import CRITERIA
from gatekit.envs import ENVS
from gatekit.errors import ConfigError
from gatekit.experts import EXPERTS
from gatekit.learners import LEARNERS
from gatekit.registry import Registry, factory

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes/hg_cartpole.yaml")

PLUGIN = '''
import pathlib
import gymnasium as gym
from gatekit.criteria.base import Criterion
from gatekit.envs.toy import EchoEnv
from gatekit.registry import factory

MARKER = pathlib.Path({marker!r})


def shell(*args, **kwargs):
    MARKER.touch()


class NotAComponent:
    def __init__(self, *args, **kwargs):
        MARKER.touch()


@factory("criterion")
def marked_for_criteria(**kwargs):
    MARKER.touch()


class BrokenGate(Criterion):
    def __init__(self):
        raise RuntimeError("gate hardware not found")

    def takeover(self, ctx):
        return None


class PluginEnv(EchoEnv):
    def __init__(self, *, split="train", seed=None, dim=2):
        super().__init__(dim=dim)


@factory("env")
def make_plugin_env(*, split="train", seed=None):
    return PluginEnv(dim=3)


@factory("env")
def make_not_an_env(*, split="train", seed=None):
    return "an env, promise"
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A plugin module whose wrong-role members would create ``marker`` if they were ever called."""
    marker = tmp_path / "marker"
    (tmp_path / "gk_test_plugin.py").write_text(PLUGIN.format(marker=str(marker)))
    (tmp_path / "gk_raises_on_import.py").write_text("raise RuntimeError('plugin misconfigured: no GPU')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


def _dry_run(*overrides):
    return CliRunner().invoke(main, ["train", RECIPE, "--dry-run", "--out", "unused-run-dir",
                                     *[a for o in overrides for a in ("--set", o)]])


def _one_line_error(res) -> str:
    assert res.exit_code == 2, (res.output, res.stderr, res.exception)
    # a changed id may come with a warning about the section's other keys (tests/test_components.py)
    lines = [x for x in res.stderr.strip().splitlines() if not x.startswith("gatekit: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("gatekit: error: "), res.stderr
    return lines[0]


@pytest.mark.parametrize("role", ["env", "expert", "criterion", "learner"])
@pytest.mark.parametrize("target", ["os:system", "subprocess:getoutput", "builtins:exec",
                                    "gk_test_plugin:shell", "gk_test_plugin:NotAComponent"])
def test_a_recipe_id_of_the_wrong_role_is_refused_before_anything_runs(plugin, role, target):
    res = _dry_run(f"{role}.id={target}", f"{role}.command=touch {plugin}")
    line = _one_line_error(res)
    assert f"{role}.id: '{target}' is not a {role}" in line
    assert not plugin.exists()


def test_a_factory_marked_for_another_role_is_refused(plugin):
    line = _one_line_error(_dry_run("learner.id=gk_test_plugin:marked_for_criteria"))
    assert "learner.id" in line and "factory('learner')" in line
    assert not plugin.exists()


def test_components_of_their_role_resolve(plugin):
    gate = build(CRITERIA, Component(id="gatekit.criteria.simple:NeverCriterion"), "criterion")
    assert gate.name == "never"
    # an env class of its role, a marked env factory, and a registered target named by path
    env = build(ENVS, Component(id="gk_test_plugin:PluginEnv", kwargs={"dim": 4}), "env", split="train", seed=0)
    assert env.action_space.shape == (4,)
    env = build(ENVS, Component(id="gk_test_plugin:make_plugin_env"), "env", split="train", seed=0)
    assert isinstance(env, gym.Env) and env.action_space.shape == (3,)
    env = build(ENVS, Component(id="gatekit.envs.classic:make_cartpole_env"), "env", split="test", seed=0)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    # the plugin's own keyword arguments are still checked against its signature
    with pytest.raises(ConfigError, match="unknown key 'env.dims'; did you mean 'dim'"):
        build(ENVS, Component(id="gk_test_plugin:PluginEnv", kwargs={"dims": 4}), "env", split="train", seed=0)
    assert not plugin.exists()


def test_a_marked_factory_that_returns_something_else_is_a_one_line_error(plugin):
    with pytest.raises(ConfigError, match=r"^env\.id: plugin 'gk_test_plugin:make_not_an_env' returned a str, not a env"):
        build(ENVS, Component(id="gk_test_plugin:make_not_an_env"), "env", split="train", seed=0)


def test_plugin_import_and_constructor_errors_are_one_line_naming_the_plugin(plugin):
    line = _one_line_error(_dry_run("criterion.id=gk_raises_on_import:Gate"))
    assert "criterion.id" in line and "gk_raises_on_import" in line and "RuntimeError: plugin misconfigured: no GPU" in line
    line = _one_line_error(_dry_run("criterion.id=gk_test_plugin:BrokenGate"))
    assert "criterion.id: plugin 'gk_test_plugin:BrokenGate' failed: RuntimeError: gate hardware not found" in line
    line = _one_line_error(_dry_run("criterion.id=gk_no_such_plugin:Gate"))
    assert "cannot import module 'gk_no_such_plugin'" in line
    line = _one_line_error(_dry_run("criterion.id=gk_test_plugin:Nope"))
    assert "has no attribute 'Nope'" in line
    line = _one_line_error(_dry_run("criterion.id=../gk_test_plugin:Gate"))
    assert "not a plugin id" in line


def test_every_registry_has_a_role_and_registered_names_still_resolve():
    for registry in (ENVS, EXPERTS, CRITERIA, LEARNERS):
        with pytest.raises(ConfigError, match="standard library"):
            registry.get("os:system", field="x.id")
    assert callable(EXPERTS.get("sb3")) and callable(EXPERTS.get("sb3-policy"))
    # a registry of a kind without a role takes registered names only
    other = Registry("gadget")
    other.register("sqrt", "math:sqrt")
    assert other.get("sqrt")(4.0) == 2.0
    with pytest.raises(ConfigError, match="registered names only"):
        other.get("math:floor")
    with pytest.raises(ValueError, match="unknown role"):
        factory("gadget")
