"""A person as the expert: the keyboard window driven headless with scripted key events.

SDL's dummy video driver stands in for a display; a fake monotonic clock makes the person's
reaction times and the effort counters exact; key events are posted into pygame's queue by a
driver the window calls whenever it looks at its events (a scripted person, in the same process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

pygame = pytest.importorskip("pygame")

from gatekit.config import load_recipe_dict  # noqa: E402
from gatekit.criteria.base import Criterion  # noqa: E402
from gatekit.criteria.human import HumanCriterion  # noqa: E402
from gatekit.criteria.simple import AlwaysCriterion  # noqa: E402
from gatekit.data import RecordStore  # noqa: E402
from gatekit.errors import ConfigError, GatekitError, PersonLeft  # noqa: E402
from gatekit.experts.base import Expert  # noqa: E402
from gatekit.experts.keyboard import KeyboardExpert, ScriptedPerson, init_display  # noqa: E402
from gatekit.experts.keyboard import window as kbwindow  # noqa: E402
from gatekit.experts.keyboard.window import _COLORS  # noqa: E402
from gatekit.types import Decision, GateContext  # noqa: E402
from gatekit.wrappers import InterventionWrapper  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    yield
    left = kbwindow._open() if kbwindow._open is not None else None
    if left is not None:  # one window per process: never leave one open for the next test
        left.close()


class FakeClock:
    """A monotonic clock that moves only when someone sleeps on it; a wait longer than
    ``limit`` seconds fails the test instead of hanging it."""

    def __init__(self, limit: float = 600.0) -> None:
        self.t = self.start = 100.0
        self.limit = limit

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += dt
        if self.t - self.start > self.limit:
            raise RuntimeError(f"waited more than {self.limit} s (fake) for the person")


class PixelEnv(gym.Env):
    """A tiny env with an rgb_array picture: the observation counts the steps."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, *, action_space: gym.Space | None = None, horizon: int = 20) -> None:
        self.action_space = action_space or gym.spaces.Discrete(3)
        self.observation_space = gym.spaces.Box(0.0, 1000.0, (1,), np.float32)
        self.render_mode = "rgb_array"
        self.horizon = horizon
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)], np.float32), 0.0, False, self.t >= self.horizon, {}

    def render(self):
        return np.full((30, 40, 3), (self.t * 10) % 255, dtype=np.uint8)


class Planned(Expert):
    """An expert that plays a fixed list of actions (what the scripted person types)."""

    def __init__(self, env: gym.Env, actions: list) -> None:
        super().__init__(env.observation_space, env.action_space)
        self.actions = list(actions)

    def act(self, obs):
        return self.actions.pop(0)


class OnSteps(Criterion):
    """A robot gate that takes over on given episode steps and hands back on others, reading
    the expert's action on hand-back like AIM's rule does."""

    name = "step-gate"

    def __init__(self, take: set[int], give: set[int]) -> None:
        super().__init__()
        self.take, self.give = take, give

    def takeover(self, ctx: GateContext) -> Decision:
        return Decision(expert_acts=ctx.episode_step in self.take)

    def handback(self, ctx: GateContext) -> Decision:
        _ = ctx.expert_action
        return Decision(expert_acts=ctx.episode_step not in self.give)


DISCRETE_KEYS = {"a": 0, "b": 1, "c": 2}


def keyboard(env, clock, **kwargs):
    kwargs.setdefault("keys", DISCRETE_KEYS)
    return KeyboardExpert(env=env, clock=clock, sleep=clock.sleep, **kwargs)


def run_steps(w, n, novice_action=0):
    infos = []
    w.reset(seed=0)
    for _ in range(n):
        infos.append(w.step(novice_action)[4])
    return infos


def test_keys_become_the_executed_actions():
    clock, env = FakeClock(), PixelEnv()
    person = ScriptedPerson(expert=Planned(env, [2, 0, 1, 1]), reaction_seconds=0.3, key_seconds=0.1)
    kb = keyboard(env, clock, driver=person, keys={"a": 0, "b": 1, "x": 1, "c": 2})
    w = InterventionWrapper(env, expert=kb, criterion=AlwaysCriterion())
    infos = run_steps(w, 4)
    assert [i["gatekit"]["executed_action"] for i in infos] == [2, 0, 1, 1]
    assert [i["gatekit"]["expert_action"] for i in infos] == [2, 0, 1, 1]
    # LeRobot's keys: an intervention and the action the person gave
    assert all(i["is_intervention"] for i in infos)
    assert [i["action_intervention"] for i in infos] == [2, 0, 1, 1]
    effort = infos[-1]["gatekit"]["person"]
    assert effort["help_requests"] == 1 and effort["takeovers"] == 0
    assert effort["latency_median"] == pytest.approx(0.3, abs=0.011)
    assert effort["control_seconds"] == pytest.approx(0.3 + 3 * 0.1, abs=0.05)


def test_help_request_waits_for_the_person_then_the_gate_hands_back():
    clock, env = FakeClock(), PixelEnv()
    seen = []

    class Watcher(ScriptedPerson):
        def __call__(self, kb, now):
            if kb.waiting:
                seen.append(kb.status)
            super().__call__(kb, now)

    person = Watcher(expert=Planned(env, [1, 2, 2, 1, 2, 2]), reaction_seconds=0.5, key_seconds=0.2)
    kb = keyboard(env, clock, driver=person)
    w = InterventionWrapper(env, expert=kb, criterion=OnSteps(take={2, 6}, give={4, 8}))
    infos = run_steps(w, 10)
    g = [i["gatekit"] for i in infos]
    assert [s for s, x in enumerate(g) if x["switched"]] == [2, 6]
    assert [s for s, x in enumerate(g) if x["handed_back"]] == [4, 8]
    assert [x["executed_action"] for x in g] == [0, 0, 1, 2, 0, 0, 1, 2, 0, 0]
    assert [i["is_intervention"] for i in infos] == [x["intervened"] for x in g]
    assert "action_intervention" not in infos[0]
    # on the hand-back steps the person still gave an action (the gate compared it), unexecuted
    assert g[4]["expert_queried"] and not g[4]["intervened"]
    effort = g[-1]["person"]
    assert effort["help_requests"] == 2
    assert effort["latency_median"] == pytest.approx(0.5, abs=0.011)
    assert effort["latency_p90"] == pytest.approx(0.5, abs=0.011)
    # the env waited in the "asked" state, pumping the window's events ~every 10 ms, then in control
    assert seen.count("asked") >= 40 and "control" in seen
    assert kb.status == "idle" and not kb.asked


def test_person_hands_back_with_the_control_key():
    clock, env = FakeClock(), PixelEnv()
    person = ScriptedPerson(expert=Planned(env, [1, 2, 2, 2]), reaction_seconds=0.2, key_seconds=0.1,
                            hand_back_after=2)
    kb = keyboard(env, clock, driver=person)
    w = InterventionWrapper(env, expert=kb, criterion=OnSteps(take={1}, give=set()))  # the gate never hands back
    g = [i["gatekit"] for i in run_steps(w, 6)]
    assert [x["intervened"] for x in g] == [False, True, True, False, False, False]
    assert g[3]["handed_back"] and g[3]["executed_action"] == 0  # the novice acts on the hand-back step
    assert not g[3]["expert_queried"]  # handing back gives no label
    assert g[-1]["person"]["handbacks"] == 1 and g[-1]["person"]["help_requests"] == 1


class KeyPlan:
    """Posts named keys when the window is in a given state at a given step."""

    def __init__(self, plan: dict[tuple[str, int], str]) -> None:
        self.plan = dict(plan)

    def __call__(self, kb, now):
        key = self.plan.pop((kb.status, kb.steps), None) if kb.waiting else None
        if key is not None:
            code = pygame.key.key_code(key)
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=code))
            pygame.event.post(pygame.event.Event(pygame.KEYUP, key=code))


def test_human_gated_person_takes_over_and_releases_with_a_key():
    clock, env = FakeClock(), PixelEnv()
    plan = KeyPlan({("watch", 3): "t", ("control", 3): "c", ("control", 4): "b", ("control", 5): "t"})
    kb = keyboard(env, clock, driver=plan, fps=5.0)
    w = InterventionWrapper(env, expert=kb, criterion=HumanCriterion())
    t0 = clock.t
    g = [i["gatekit"] for i in run_steps(w, 8)]
    assert [x["intervened"] for x in g] == [False, False, True, True, False, False, False, False]
    assert g[2]["switched"] and g[4]["handed_back"]
    assert [x["executed_action"] for x in g[2:4]] == [2, 1]
    assert not plan.plan  # every planned key was used
    effort = g[-1]["person"]
    assert (effort["takeovers"], effort["handbacks"], effort["help_requests"]) == (1, 1, 0)
    assert effort["latency_median"] is None  # nobody asked the person
    # each novice step was shown for 1/fps s: 2 before the take-over, 3 after the hand-back
    assert effort["watch_seconds"] == pytest.approx(5 * 0.2, abs=0.02)
    assert clock.t - t0 == pytest.approx(effort["session_seconds"], abs=1e-9)


def test_continuous_keys_are_smoothed_toward_their_value_and_back():
    clock = FakeClock()
    env = PixelEnv(action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    keys = {"left": [1.0, None], "right": [-1.0, None], "up": [None, 1.0]}
    presses = iter([("down", "left"), None, None, None, None, None, ("up", "left"), None, None, None])

    def driver(kb, now):
        if not kb.waiting or kb.steps != driver.step:
            return
        driver.step += 1
        event = next(presses)
        if event is not None:
            kind = pygame.KEYDOWN if event[0] == "down" else pygame.KEYUP
            pygame.event.post(pygame.event.Event(kind, key=pygame.key.key_code(event[1])))

    driver.step = 1
    kb = keyboard(env, clock, driver=driver, keys=keys, fps=10.0, rise_seconds=0.5, release_seconds=0.25)
    w = InterventionWrapper(env, expert=kb, criterion=AlwaysCriterion())
    infos = run_steps(w, 10, novice_action=np.zeros(2, np.float32))
    steer = [float(i["gatekit"]["executed_action"][0]) for i in infos]
    throttle = [float(i["gatekit"]["executed_action"][1]) for i in infos]
    # first step: the help request waits for the first key, then one frame (0.1 s) of rising
    np.testing.assert_allclose(steer, [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.6, 0.2, 0.0, 0.0], atol=1e-5)
    assert throttle == [0.0] * 10
    assert infos[-1]["gatekit"]["person"]["help_requests"] == 1


def test_scripted_person_answers_a_request_even_when_the_expert_would_barely_move():
    clock = FakeClock(limit=30.0)
    env = PixelEnv(action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    still = Planned(env, [np.array([0.05, -0.1])] * 10)  # inside the dead band on both dimensions
    person = ScriptedPerson(expert=still, reaction_seconds=0.3, key_seconds=0.1)
    kb = keyboard(env, clock, driver=person, keys={"left": [1.0, None], "right": [-1.0, None],
                                                   "up": [None, 1.0], "down": [None, -1.0]})
    w = InterventionWrapper(env, expert=kb, criterion=AlwaysCriterion())
    infos = run_steps(w, 3, novice_action=np.zeros(2, np.float32))
    assert infos[-1]["gatekit"]["person"]["latency_median"] == pytest.approx(0.3, abs=0.011)
    assert infos[0]["gatekit"]["executed_action"][1] < 0  # it answered with "down" (throttle -0.1)


def test_scripted_driver_answers_each_new_episode_with_a_fresh_key():
    clock = FakeClock(limit=30.0)  # a request nobody answers fails here instead of hanging
    env = PixelEnv(action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32), horizon=3)
    full = Planned(env, [np.array([0.0, 1.0])] * 100)  # always full throttle: "up" stays held
    kb = keyboard(env, clock, driver=ScriptedPerson(expert=full, reaction_seconds=0.3, key_seconds=0.1),
                  keys={"left": [1.0, None], "right": [-1.0, None], "up": [None, 1.0]})
    w = InterventionWrapper(env, expert=kb, criterion=AlwaysCriterion())
    for _ in range(3):
        obs, _ = w.reset()
        for _ in range(3):
            info = w.step(np.zeros(2, np.float32))[4]
    assert info["gatekit"]["person"]["help_requests"] == 3
    assert info["gatekit"]["person"]["latency_p90"] == pytest.approx(0.3, abs=0.011)


def test_screenshot_command_saves_each_window(tmp_path):
    pytest.importorskip("minigrid")
    import runpy

    script = runpy.run_path(str(ROOT / "bench" / "keyboard_screenshots.py"))
    assert script["main"](["--out", str(tmp_path), "--only", "minigrid"]) == 0
    for name in ("keyboard_minigrid_help.png", "keyboard_minigrid_control.png"):
        image = pygame.image.load(str(tmp_path / name))
        assert image.get_width() > 300
    asked = pygame.image.load(str(tmp_path / "keyboard_minigrid_help.png")).get_at((2, 60))
    assert tuple(asked)[:3] == _COLORS["asked"]
    control = pygame.image.load(str(tmp_path / "keyboard_minigrid_control.png")).get_at((2, 60))
    assert tuple(control)[:3] == _COLORS["control"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keys": {"lefft": 0, "b": 1, "c": 2}}, "unknown key 'lefft'; did you mean 'left'?"),
        ({"keys": {"a": 0, "b": 1}}, r"action\(s\) \[2\] of Discrete\(3\) have no key"),
        ({"keys": {"a": 0, "b": 1, "t": 2}}, "'t' is the control key"),
        ({"keys": {"a": 0, "b": 1, "c": 7}}, "expected an action in"),
        ({"control_key": "ctrl"}, "unknown key 'ctrl'"),
        ({"keys": None}, "give a key map"),
    ],
)
def test_bad_key_maps_name_the_valid_keys(kwargs, message):
    with pytest.raises(ConfigError, match=message) as exc:
        keyboard(PixelEnv(), FakeClock(), **kwargs)
    assert len(str(exc.value).splitlines()) == 1
    if "unknown" in message or "no key" in message:
        assert "key names are pygame's: a-z, 0-9, left, right, up, down, space" in str(exc.value)


def test_box_key_map_must_cover_every_dimension():
    env = PixelEnv(action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    with pytest.raises(ConfigError, match=r"dimension\(s\) \[1\]"):
        keyboard(env, FakeClock(), keys={"left": [1.0, None]})
    with pytest.raises(ConfigError, match="outside"):
        keyboard(env, FakeClock(), keys={"left": [2.0, 1.0]})


def test_no_display_is_a_one_line_error(monkeypatch):
    for var in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    if not sys.platform.startswith("linux"):
        pytest.skip("a desktop OS always has a display")
    with pytest.raises(GatekitError, match="no display.*xvfb-run.*SDL_VIDEODRIVER=dummy"):
        init_display(pygame)


def test_cli_without_display_exits_2_with_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from gatekit.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_run_recipe()))
    for var in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()  # click >= 8.2 keeps stderr apart
    res = runner.invoke(main, ["train", str(recipe), "--dry-run"])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("gatekit: error: expert keyboard: no display") and len(res.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    res = runner.invoke(main, ["train", str(recipe), "--dry-run"])
    assert res.exit_code == 0 and "is valid" in res.output, res.stderr


def test_closing_the_window_raises_person_left_with_earlier_steps_kept():
    clock, env = FakeClock(), PixelEnv()
    store = RecordStore(env.observation_space, env.action_space)
    kb = keyboard(env, clock, driver=ScriptedPerson(expert=Planned(env, [1] * 10), reaction_seconds=0.1))
    w = InterventionWrapper(env, expert=kb, criterion=AlwaysCriterion(), store=store)
    w.reset(seed=0)
    for _ in range(3):
        w.step(0)
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    with pytest.raises(PersonLeft, match="--resume"):
        w.step(0)
    assert len(store) == 3 and store.column("executed_action").tolist() == [1, 1, 1]


def test_the_window_says_plainly_who_is_in_control(tmp_path):
    clock, env = FakeClock(), PixelEnv()
    shots = {}

    def driver(kb, now):
        if kb.waiting and kb.status not in shots:
            path = tmp_path / f"{kb.status}.png"
            kb.screenshot(str(path))
            shots[kb.status] = path
            code = pygame.key.key_code("a")
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=code))

    kb = keyboard(env, clock, driver=driver)
    w = InterventionWrapper(env, expert=kb, criterion=AlwaysCriterion())
    run_steps(w, 2)
    assert set(shots) == {"asked", "control"}
    for status, path in shots.items():
        image = pygame.image.load(str(path))
        assert image.get_size() == kb._screen.get_size()
        assert tuple(image.get_at((2, 60)))[:3] == _COLORS[status]  # the border's colour


def test_without_an_audio_device_the_beep_warns_once_and_the_window_goes_on(monkeypatch):
    def no_audio(*args, **kwargs):
        raise pygame.error("no audio device")

    monkeypatch.setattr(pygame.mixer, "get_init", lambda: None)
    monkeypatch.setattr(pygame.mixer, "init", no_audio)
    clock, env = FakeClock(), PixelEnv()
    kb = keyboard(env, clock, driver=ScriptedPerson(expert=Planned(env, [1, 1, 1]), reaction_seconds=0.1), sound=True)
    w = InterventionWrapper(env, expert=kb, criterion=OnSteps(take={0, 2}, give={1}))
    with pytest.warns(UserWarning, match="no sound") as caught:
        infos = run_steps(w, 3)
    assert len(caught) == 1 and infos[-1]["gatekit"]["person"]["help_requests"] == 2


def test_scripted_person_on_minigrid_types_the_planners_actions():
    pytest.importorskip("minigrid")
    from gatekit.envs.minigrid import make_doorkey_env
    from gatekit.experts.minigrid import MiniGridPlannerExpert

    clock, env = FakeClock(), make_doorkey_env(size=5)
    kb = KeyboardExpert(env=env, script="minigrid-planner", reaction_seconds=0.4, key_seconds=0.2,
                        clock=clock, sleep=clock.sleep)
    planner = MiniGridPlannerExpert(env=env)
    w = InterventionWrapper(env, expert=kb, criterion=AlwaysCriterion())
    obs, _ = w.reset(seed=3)
    done, steps = False, 0
    while not done:
        expected = planner.act(obs)
        obs, _, term, trunc, info = w.step(0)
        assert info["gatekit"]["executed_action"] == expected
        done, steps = term or trunc, steps + 1
    assert info["is_success"]
    effort = info["gatekit"]["person"]
    assert effort["help_requests"] == 1 and effort["latency_median"] == pytest.approx(0.4, abs=0.011)
    assert effort["control_seconds"] == pytest.approx(0.4 + (steps - 1) * 0.2, abs=0.05)


def _run_recipe(**expert):
    return {
        "name": "kbd", "seed": 0,
        "env": {"id": "minigrid-doorkey", "size": 5},
        "expert": {"id": "keyboard", "script": "minigrid-planner", "reaction_seconds": 0.0, "key_seconds": 0.0,
                   **expert},
        "criterion": {"id": "always"},
        "learner": {"id": "mlp-bc", "update_every": 25, "iterations": 1, "first_iterations": 1,
                    "steps_per_iteration": 1, "batch_size": 32},
        "budget": {"total_steps": 80},
        "eval": {"final_episodes": 1, "in_worker": False},
        "log": {"tensorboard": False, "progress": False, "plots": False},
        "data": {"checkpoint_every": 1000},
    }


def test_closing_the_window_mid_run_stops_it_cleanly_and_resume_finishes(tmp_path):
    pytest.importorskip("minigrid")
    from gatekit.cli import results_table
    from gatekit.data import read_log
    from gatekit.runs import train

    def close_window(live):
        if live["steps"] >= 25:
            pygame.event.post(pygame.event.Event(pygame.QUIT))

    out = tmp_path / "run"
    res = train(load_recipe_dict(_run_recipe()), out=out, on_progress=close_window)
    assert res.status == "interrupted" and 25 <= res.total_steps < 80
    written = json.loads((out / "results.json").read_text())
    assert written["status"] == "interrupted" and written["person"] == res.person
    _, cols, info = read_log(out / "records.gkr")
    assert info["records"] == res.total_steps and cols["intervened"].all()
    first = res.person
    assert first is not None and first["help_requests"] >= 1 and first["control_seconds"] > 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["person"]["help_requests"] == first["help_requests"]
    res = train(resume=out)
    assert res.status == "finished" and res.total_steps == 80
    assert res.person is not None
    assert res.person["help_requests"] > first["help_requests"]  # both sessions counted
    assert res.person["session_seconds"] > first["session_seconds"]
    assert kbwindow._open is None or kbwindow._open() is None  # the run closed its window
    table = results_table(res, "t")
    rows = [str(c) for c in table.columns[0]._cells]
    assert "person: help requests (response s, median / p90)" in rows


def test_core_imports_do_not_pull_pygame():
    code = "import sys, gatekit.criteria.human, gatekit.experts.keyboard; print('pygame' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "False"


@pytest.mark.slow
def test_metadrive_window_with_a_scripted_driver():
    pytest.importorskip("metadrive")
    from gatekit.envs.metadrive import make_metadrive_toy_env

    clock = FakeClock()
    env = make_metadrive_toy_env(split="test")
    try:
        kb = KeyboardExpert(env=env, script="metadrive-ppo", reaction_seconds=0.3, key_seconds=0.1,
                            clock=clock, sleep=clock.sleep)
        w = InterventionWrapper(env, expert=kb, criterion=AlwaysCriterion())
        infos = run_steps(w, 30, novice_action=np.zeros(2, np.float32))
        throttle = [float(i["gatekit"]["executed_action"][1]) for i in infos]
        assert max(throttle) > 0.5  # the scripted person held "up"
        assert infos[-1]["gatekit"]["person"]["latency_median"] == pytest.approx(0.3, abs=0.011)
        assert kb._screen is not None
    finally:
        env.close()
