"""Reproduce the AIM row of the paper's Table 1: run a recipe over several seeds and summarise.

Each seed is one full ``gatekit.run.train`` run (sequential, progress bars off) in
``OUT/seed-<s>``; a seed whose folder already holds a finished run is read back, not re-run, so
an interrupted benchmark continues where it stopped. The table gives, as mean ± std over seeds
(sample std, ddof = 1): expert-involved steps and the take-over rate, total steps, switches,
the final test success, return and route completion (when the env reports it), the expert's own
test figures on the same held-out episodes, and the wall time per run. A JSON summary with
every seed's figures goes to ``OUT/summary.json``.

The expert's reference evaluation visits the same held-out episodes with the same expert seeds
in every run, so it is computed by the first seed's run only (``--expert-every-seed`` to repeat
it).

Example:
    nice -n 10 .venv/bin/python bench/aim_reproduce.py --recipe recipes/aim_metadrive.yaml --seeds 5
    .venv/bin/python bench/aim_reproduce.py --recipe recipes/aim_metadrive_toy.yaml --seeds 2 \\
        --set budget.total_steps=1500 --out runs/aim_toy_bench
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatekit.config import load_recipe  # noqa: E402
from gatekit.run import train  # noqa: E402

#: (results.json key, label) of the novice's test metrics; missing keys are skipped.
TEST_METRICS = (("test_success", "test success"), ("test_return", "test return"),
                ("test_route_completion", "route completion"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/aim_metadrive.yaml", help="the recipe to run")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0 .. N-1, or from --first-seed)")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override passed to every run (repeatable), e.g. --set budget.total_steps=3000")
    p.add_argument("--out", type=Path, default=None, help="benchmark folder (default runs/<recipe name>-bench)")
    p.add_argument("--expert-every-seed", action="store_true",
                   help="evaluate the expert in every run (it is the same on every seed)")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    return args


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def fmt(values: list[float], digits: int) -> str:
    m, s = mean_std(values)
    return "n/a" if math.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"


def metric(results: dict[str, Any], key: str) -> float | None:
    v = results.get(key)
    return float(v["mean"]) if isinstance(v, dict) else None


def run_seed(recipe_path: str, overrides: list[str], seed: int, out: Path, *, expert: bool) -> dict[str, Any]:
    """Run (or read back) one seed; returns its results.json content."""
    results_path = out / "results.json"
    if results_path.is_file():
        done = json.loads(results_path.read_text())
        if done.get("status") == "finished":
            print(f"seed {seed}: finished run found in {out}, reusing it", flush=True)
            return done
        raise SystemExit(f"seed {seed}: '{out}' holds an unfinished run; resume it with "
                         f"`gatekit train --resume {out}` or delete it, then run the benchmark again")
    extra = [f"seed={seed}", "log.progress=false"]
    if not expert:
        extra.append("eval.expert_reference=false")
    recipe = load_recipe(recipe_path, [*overrides, *extra])
    print(f"seed {seed}: training {recipe.name} into {out}", flush=True)
    start = time.perf_counter()
    results = train(recipe, out=out, progress=False)
    print(f"seed {seed}: {results['status']} in {time.perf_counter() - start:.0f} s, "
          f"{results['expert_steps']} expert / {results['total_steps']} total steps, "
          f"test success {metric(results, 'test_success')}", flush=True)
    return results


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-metric lists over seeds, and the expert's reference figures."""
    col = {
        "expert_steps": [float(r["expert_steps"]) for r in runs],
        "takeover_rate": [float(r["takeover_rate"]) for r in runs],
        "total_steps": [float(r["total_steps"]) for r in runs],
        "switches": [float(r["switches"]) for r in runs],
        "wall_seconds": [float(r["wall_seconds"]) for r in runs],
    }
    for key, _ in TEST_METRICS:
        vals = [metric(r, key) for r in runs]
        if any(v is not None for v in vals):
            col[key] = vals
    expert_run = next((r for r in runs if isinstance(r.get("expert_test_success"), dict)), None)
    expert = {}
    if expert_run is not None:
        for key, _ in TEST_METRICS:
            v = expert_run.get(f"expert_{key}")
            if isinstance(v, dict):
                expert[key] = {"mean": v["mean"], "std": v["std"], "n": v["n"]}
    return {"per_seed": col, "stats": {k: dict(zip(("mean", "std"), mean_std(v), strict=True)) for k, v in col.items()},
            "expert": expert}


def print_table(summary: dict[str, Any], n: int) -> None:
    c = summary["per_seed"]
    rows = [
        ("expert-involved steps", f"{fmt(c['expert_steps'], 0)}  (take-over rate {fmt(c['takeover_rate'], 2)})"),
        ("total steps", fmt(c["total_steps"], 0)),
        ("switches", fmt(c["switches"], 0)),
    ]
    for key, label in TEST_METRICS:
        if key in c:
            rows.append((label, fmt(c[key], 3 if key != "test_return" else 1)))
    for key, label in TEST_METRICS:
        e = summary["expert"].get(key)
        if e is not None:
            rows.append((f"expert {label}", f"{e['mean']:.3f} ± {e['std']:.3f} over {e['n']} episodes"
                         if key != "test_return" else f"{e['mean']:.1f} ± {e['std']:.1f} over {e['n']} episodes"))
    if "test_success" in c and "test_success" in summary["expert"]:
        ratio = mean_std(c["test_success"])[0] / max(summary["expert"]["test_success"]["mean"], 1e-9)
        rows.append(("novice / expert success", f"{ratio:.2f}"))
    rows.append(("wall time per run (s)", fmt(c["wall_seconds"], 0)))
    width = max(len(r[0]) for r in rows)
    print(f"\nAIM over {n} seed(s), mean ± std over seeds (expert rows: over its test episodes)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = load_recipe(args.recipe, args.overrides)  # fail early on a bad recipe or override
    out = args.out or Path("runs") / f"{base.name}-bench"
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    for i, seed in enumerate(seeds):
        runs.append(run_seed(args.recipe, args.overrides, seed, out / f"seed-{seed}",
                             expert=base.eval.expert_reference and (i == 0 or args.expert_every_seed)))
    summary = summarise(runs)
    summary.update({"recipe": args.recipe, "overrides": args.overrides, "seeds": seeds,
                    "runs": [str(out / f"seed-{s}") for s in seeds]})
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_table(summary, len(runs))
    print(f"\nsummary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
