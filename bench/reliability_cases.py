"""Count what gatekit survives: random damage to a run folder, and bad inputs.

Damage (tests/damage.py): a real run interrupted at step 200 is copied, one file is damaged at
random (1-16 flipped bytes, a zeroed range, a truncation, a deletion; the record log's header
excluded), then ``gatekit check`` and ``gatekit train --resume`` run on it. A case *survives*
when every expert-labelled record whose frame was not touched is still read (before and after
the resume), damage to a file with a CRC or checksum is reported by ``gatekit check``, and the
resume ends with exit 0 (finished) or exit 2 and one ``gatekit: error:`` line, never a
traceback. *Records lost* counts expert-labelled records not read back after the resume (those
the damage touched).

Bad inputs (tests/bad_inputs.py): each bad recipe or option must make ``gatekit train --dry-run``
exit 2 with one line containing the expected words (*clean*).

Usage:
    PYTHONPATH=. nice -n 10 python bench/reliability_cases.py --cases 200 --seed 0
"""

from __future__ import annotations

import argparse
import collections
import random
import tempfile
import time
import warnings
from pathlib import Path

import yaml
from click.testing import CliRunner

from gatekit.cli import main
from tests.bad_inputs import BAD_OPTIONS, BAD_RECIPES
from tests.damage import FILES, KINDS, make_base, random_damage, run_case
from tests.recipes import tiny_recipe


def damage_cases(n: int, seed: int, root: Path) -> None:
    base = make_base(root / "base")
    rng = random.Random(seed)
    by_kind: collections.Counter[str] = collections.Counter()
    survived = resumed = refused = lost = touched = expert = reported = harmless = 0
    failures = []
    t0 = time.perf_counter()
    for i in range(n):
        d = random_damage(rng, base, file=FILES[i % len(FILES)], kind=KINDS[(i // len(FILES)) % len(KINDS)])
        out = run_case(base, root / f"case{i}", d)
        by_kind[f"{d.kind} {d.file}"] += 1
        survived += out.survived
        reported += out.reported
        harmless += out.harmless and not out.reported
        resumed += out.resumed
        refused += out.exit_code == 2
        lost += out.expert_lost
        touched += out.expert_touched
        expert += out.expert_records
        if not out.survived:
            failures.append(f"  {d}: {out.violations}")
    print(f"damage cases tried {n}, survived {survived}; reported (check, a warning or exit 2) {reported}, "
          f"unreported but changing nothing gatekit reads {harmless}, unreported text-file edits "
          f"{n - reported - harmless}; resumed {resumed}, refused cleanly (exit 2) {refused}; expert-labelled "
          f"records lost {lost} of {expert} (in frames the damage touched: {touched}) "
          f"({time.perf_counter() - t0:.0f} s)")
    print("\n".join(failures) if failures else "  no case failed")


def bad_inputs(root: Path) -> None:
    clean = 0
    failures = []
    runner = CliRunner()
    for case, text, message in BAD_RECIPES:
        path = root / "bad.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        res = runner.invoke(main, ["train", str(path), "--dry-run", "--out", str(root / "bad-run")])
        lines = res.stderr.strip().splitlines()
        ok = res.exit_code == 2 and len(lines) == 1 and message in lines[0]
        clean += ok
        if not ok:
            failures.append(f"  {case}: exit {res.exit_code}: {res.stderr.strip()[-200:]}")
    good = root / "good.yaml"
    good.write_text(yaml.safe_dump(tiny_recipe()))
    for case, args, message in BAD_OPTIONS:
        res = runner.invoke(main, ["train", str(good), "--dry-run", *args])
        lines = res.stderr.strip().splitlines()
        ok = res.exit_code == 2 and len(lines) == 1 and message in lines[0]
        clean += ok
        if not ok:
            failures.append(f"  {case}: exit {res.exit_code}: {res.stderr.strip()[-200:]}")
    print(f"bad inputs tried {len(BAD_RECIPES) + len(BAD_OPTIONS)}, clean (exit 2, one line naming the field) {clean}")
    print("\n".join(failures) if failures else "  no input failed")


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200, help="random damage cases")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # the damage warnings are expected; the counts say what matters
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bad_inputs(root)
        damage_cases(args.cases, args.seed, root)


if __name__ == "__main__":
    main_()
