"""A run's records as a Minari dataset (the Farama format for offline RL and imitation data).

``gatekit export RUN_DIR --format minari`` (or :func:`to_minari`) reads the run's record log and
writes one Minari episode per gatekit episode, through Minari's own writer
(``minari.create_dataset_from_buffers`` with ready-made episode buffers, which needs neither an
env nor jax), so ``minari.load_dataset(dataset_id)`` reads it back:

=================== =======================================================================
Minari field        gatekit record
=================== =======================================================================
observations        ``obs`` of each step, then the last step's ``next_obs`` (T + 1 rows)
actions             ``executed_action``: what the env executed (the expert's on intervened steps)
rewards             ``reward``
terminations        ``terminated``
truncations         ``truncated``
infos               T + 1 rows, as Minari records them (row 0 stands for the reset, row t + 1
                    for step t): ``is_intervention`` (the LeRobot-style per-step flag: the
                    expert's action was executed), ``novice_action``, ``expert_action`` (NaN / the
                    log's fill value where the expert was not asked), ``expert_queried``,
                    ``switched``, ``score``, ``step`` (gatekit's step id; -1 on the reset row)
=================== =======================================================================

An episode the run did not finish (the budget ended it, or a crash before a resume) is
exported as it stands, neither terminated nor truncated. Image observations are stored as they
are (Minari's JPEG encoding is turned off: records are data, not previews). The spaces are
read from the record log's schema: Box bounds are not recorded there, so Box spaces come back
unbounded (uint8 boxes: [0, 255]).

Needs the ``minari`` package and ``h5py`` (``pip install 'gatekit[minari]'``); Minari itself
requires gymnasium >= 1 for most of its tools, so this is a newest-stack feature.
"""

from __future__ import annotations

import inspect
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from gatekit.data import read_log
from gatekit.errors import ConfigError, RunDirError, missing_extra

INFO_FIELDS = ("novice_action", "expert_action", "expert_queried", "switched", "score", "step")


def space_from_schema(desc: dict[str, Any], dtype: np.dtype) -> gym.Space:
    """The gymnasium space a record log's schema describes (Box bounds are not recorded)."""
    kind = desc.get("type")
    if kind == "Box":
        shape = tuple(desc["shape"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return gym.spaces.Box(info.min, info.max, shape, dtype.type)
        return gym.spaces.Box(-np.inf, np.inf, shape, dtype.type)
    if kind == "Discrete":
        return gym.spaces.Discrete(int(desc["n"]), start=int(desc.get("start", 0)))
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(desc["nvec"])
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(desc["shape"])
    raise ConfigError(f"export: the record log holds a {kind} space, which the Minari export does not know")


def episodes_of(cols: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The record columns cut into episodes (in log order), as Minari's episode fields."""
    ep = cols["episode"]
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]]) if len(ep) else np.array([], dtype=np.int64)
    bounds = list(zip(starts, [*starts[1:], len(ep)], strict=True))
    out = []
    for lo, hi in bounds:
        sl = slice(int(lo), int(hi))

        def with_reset(name: str, fill: Any, sl: slice = sl) -> np.ndarray:
            col = np.asarray(cols[name][sl])
            first = np.full((1, *col.shape[1:]), fill, dtype=col.dtype)
            return np.concatenate([first, col])

        infos = {"is_intervention": with_reset("intervened", False)}
        for name in INFO_FIELDS:
            dtype = cols[name].dtype
            fill = -1 if name == "step" else (np.nan if dtype.kind in "fc" else 0 if dtype.kind in "iu" else False)
            infos[name] = with_reset(name, fill)
        out.append({
            "gatekit_episode": int(ep[lo]),
            "observations": np.concatenate([cols["obs"][sl], cols["next_obs"][hi - 1: hi]]),
            "actions": np.asarray(cols["executed_action"][sl]),
            "rewards": np.asarray(cols["reward"][sl], dtype=np.float64),
            "terminations": np.asarray(cols["terminated"][sl], dtype=bool),
            "truncations": np.asarray(cols["truncated"][sl], dtype=bool),
            "infos": infos,
        })
    return out


@contextmanager
def _datasets_root(root: Path | None) -> Any:
    """Minari finds datasets under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``)."""
    if root is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def default_dataset_id(run_dir: Path) -> str:
    """``gatekit/<run folder name>-v0`` (Minari ids are ``namespace/name-vN``)."""
    name = "".join(c if c.isalnum() or c in "_" else "_" for c in Path(run_dir).resolve().name)
    return f"gatekit/{name}-v0"


def to_minari(run_dir: str | Path, *, dataset_id: str | None = None, root: str | Path | None = None,
              description: str | None = None) -> dict[str, Any]:
    """Write the records of the run in ``run_dir`` as the Minari dataset ``dataset_id``.

    Args:
        run_dir: a gatekit run folder (its ``records.gkr`` and ``recipe.yaml``).
        dataset_id: the Minari id (default :func:`default_dataset_id`).
        root: the Minari datasets folder (default: Minari's, ``$MINARI_DATASETS_PATH`` or
            ``~/.minari/datasets``); ``minari.load_dataset`` must be pointed at the same one.
        description: the dataset's description (default: names the run's recipe).

    Returns:
        ``{"dataset_id", "path", "episodes", "steps", "intervened"}``.

    Raises:
        MissingExtraError: minari or h5py is not installed.
        RunDirError: ``run_dir`` holds no record log.
        ConfigError: the dataset exists already, or the records hold a space Minari cannot take.
    """
    try:
        import h5py  # noqa: F401  (Minari's default storage)
        import minari
        from minari.data_collector.episode_buffer import EpisodeBuffer
    except ModuleNotFoundError as exc:
        raise (missing_extra("export --format minari", exc) or exc) from exc
    run_dir = Path(run_dir)
    log = run_dir / "records.gkr"
    if not log.is_file():
        raise RunDirError(f"'{run_dir}' holds no records.gkr; give a gatekit run folder (see `gatekit train`)")
    schema, cols, _ = read_log(log)
    spaces = schema.get("spaces", {})
    obs_space = space_from_schema(spaces["observation"], cols["obs"].dtype)
    act_space = space_from_schema(spaces["action"], cols["executed_action"].dtype)
    dataset_id = dataset_id or default_dataset_id(run_dir)
    recipe = _recipe_summary(run_dir)
    episodes = episodes_of(cols)
    buffers = [EpisodeBuffer(id=i, observations=e["observations"], actions=e["actions"], rewards=e["rewards"],
                             terminations=e["terminations"], truncations=e["truncations"], infos=e["infos"])
               for i, e in enumerate(episodes)]
    kwargs: dict[str, Any] = {}
    if "jpeg_encoding" in inspect.signature(minari.create_dataset_from_buffers).parameters:
        kwargs["jpeg_encoding"] = False
    # absolute: Minari joins a relative datasets folder onto itself when it sizes the file
    with _datasets_root(Path(root).resolve() if root is not None else None), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari's reminders about authors and permalinks
        try:
            dataset = minari.create_dataset_from_buffers(
                dataset_id=dataset_id, buffer=buffers, observation_space=obs_space, action_space=act_space,
                algorithm_name=f"gatekit: {recipe}", author="gatekit",
                description=description or f"records of the gatekit run '{run_dir.name}' ({recipe}); "
                                           f"infos['is_intervention'][1:] flags the steps the expert drove",
                **kwargs)
        except ValueError as exc:
            raise ConfigError(f"export: {str(exc).splitlines()[0]}") from None
    return {"dataset_id": dataset_id, "path": str(Path(dataset.spec.data_path).parent),
            "episodes": len(episodes), "steps": int(len(cols["episode"])),
            "intervened": int(np.count_nonzero(cols["intervened"]))}


def _recipe_summary(run_dir: Path) -> str:
    import yaml

    try:
        raw = yaml.safe_load((run_dir / "recipe.yaml").read_text())
        parts = [f"{k} {raw[k]['id'] if isinstance(raw[k], dict) else raw[k]}" for k in ("env", "expert", "criterion", "learner")]
        return f"{raw.get('name', '?')}: " + ", ".join(parts)
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return run_dir.name
