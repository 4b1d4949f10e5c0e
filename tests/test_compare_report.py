"""``gatekit compare --report``: the page generated from the runs, through a stand-in backend
(no training), and Ctrl-C on the local process backend."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatekit.compare import run_comparison
from gatekit.compare.plan import run_status
from gatekit.compare.pool import Job, Outcome
from gatekit.compare.report import markers, replace_block
from gatekit.errors import GatekitError
from gatekit.evaluation import Stat
from gatekit.runs.results import EvalPoint, RunResult
from tests.recipes import needs_rliable

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "recipes" / "compare_toy.yaml"


def _toy(tmp_path: Path, **fields: object) -> Path:
    """compare_toy.yaml with extra top-level fields (fewer bootstrap resamples, a reference ...)."""
    text = TOY.read_text().replace("recipe: hg_cartpole.yaml", f"recipe: {ROOT / 'recipes' / 'hg_cartpole.yaml'}")
    path = tmp_path / "toy.yaml"
    path.write_text(text + "".join(f"{k}: {v}\n" for k, v in fields.items()))
    return path


class StandIn:
    """A backend that 'runs' a job by writing the results a run would have: PVP's novice always
    succeeds, HG-DAgger's never; the expert's own success is measured once (0.8)."""

    def __init__(self, *, resumed: tuple[str, ...] = ()) -> None:
        self.jobs: list[Job] = []
        self.resumed = resumed  # job keys whose results say they were resumed

    def run(self, jobs, events):
        out = {}
        for job in jobs:
            self.jobs.append(job)
            events.started(job)
            pvp = job.key.startswith("PVP")
            seed = int(job.key.rsplit("s", 1)[1])
            success = 1.0 if pvp else 0.0
            res = RunResult(status="finished", recipe=job.recipe["name"], seed=seed, env="cartpole", expert="pd",
                            criterion="hg", learner="pvp" if pvp else "bc", total_steps=job.total_steps,
                            expert_steps=100 + seed, expert_queries=300, switches=10 + seed, episodes=6,
                            wall_seconds=30.0 + seed, test={"success": Stat(success, 0.0, 0.0, 3)},
                            expert_test={"success": Stat(0.8, 0.4, 0.1, 3)},
                            evaluations=[EvalPoint(step=150, expert_steps=60, switches=5, metrics={"success": success / 2}),
                                         EvalPoint(step=300, expert_steps=100 + seed, switches=10, metrics={"success": success})],
                            extra={"resumed": {"from": "checkpoint.pt"}} if job.key in self.resumed else {})
            Path(job.run_dir).mkdir(parents=True)
            res.write(job.run_dir)
            events.progress(job.key, {"steps": job.total_steps})
            events.ended(job, Outcome("finished"))
            out[job.key] = Outcome("finished")
        return out


HAND_WRITTEN = """# Measured comparisons

An introduction, written by hand.

## Differences from the paper, and why

Kept as written: the numbers above come from the runs.
"""


@needs_rliable
def test_report_page_from_the_runs_keeps_the_hand_written_text(tmp_path):
    recipe = _toy(tmp_path, bootstrap_reps=300)
    page = tmp_path / "docs" / "comparison.md"
    page.parent.mkdir()
    page.write_text(HAND_WRITTEN)
    backend = StandIn()
    res = run_comparison(recipe, out=tmp_path / "out", seeds=[0, 1, 2], progress=False, report=page, backend=backend)
    assert res.ran == 6 and not res.failed and len(backend.jobs) == 6
    assert [j.key for j in backend.jobs][:2] == ["HG-DAgger s0", "PVP s0"]  # seed-major
    text = page.read_text()
    begin, end = markers("compare_toy")
    assert text.startswith(HAND_WRITTEN.split("## Differences")[0])
    assert "## Differences from the paper, and why\n\nKept as written" in text
    assert text.count(begin) == 1 and text.count(end) == 1
    block = text[text.index(begin):text.index(end)]
    assert f"gatekit compare {recipe} --out {tmp_path / 'out'} --seeds 0,1,2 --report {page}" in block
    # the table: intervals over 3 seeds, the focus's probability of improvement, run times
    assert "| PVP | 101 [100, 102] (0.34 [0.33, 0.34]) | 300 [300, 300] | 11 [10, 12] | 1.00 [1.00, 1.00] |" in block
    assert "| HG-DAgger | 1.00 [1.00, 1.00] | 3 vs 3 |" in block
    assert "| expert (alone) | – | – | – | 0.80 |" in block and "1 measurement" in block
    assert "| PVP | 3 | 0.5 (0.5-0.5) | 1.6 |" in block  # minutes per run, from wall_seconds
    assert "stratified bootstrap over seeds, rliable" in block and "300 resamples" in block
    for name in ("compare_toy_success_vs_expert_steps.png", "compare_toy_takeover_rate.png"):
        assert (page.parent / "figures" / name).stat().st_size > 1000
        assert f"(figures/{name})" in block
    for name in ("results.csv", "table.md", "success_vs_expert_steps.png", "takeover_rate.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "P(PVP > method)" in (tmp_path / "out" / "table.md").read_text()

    # an edit inside the block is replaced, an edit outside kept; nothing runs again
    page.write_text(text.replace("1 measurement", "edited by hand").replace("Kept as written", "Still kept"))
    again = run_comparison(recipe, out=tmp_path / "out", seeds=[0, 1, 2], progress=False, report=page, backend=StandIn())
    assert again.ran == 0 and again.skipped == 6
    text = page.read_text()
    assert "edited by hand" not in text and "1 measurement" in text and "Still kept" in text
    assert text.count(begin) == 1


@needs_rliable
def test_the_report_names_resumed_runs(tmp_path):
    recipe, page = _toy(tmp_path, bootstrap_reps=300), tmp_path / "comparison.md"
    run_comparison(recipe, out=tmp_path / "a", seeds=[0, 1], progress=False, report=page, backend=StandIn())
    assert "Resumed after an interruption" not in page.read_text()
    run_comparison(recipe, out=tmp_path / "b", seeds=[0, 1], progress=False, report=page,
                   backend=StandIn(resumed=("PVP s1",)))
    assert "Resumed after an interruption: PVP seed 1. A run resumed during training goes on differently" \
        in page.read_text()


@needs_rliable
def test_one_seed_says_so_instead_of_an_interval(tmp_path):
    res = run_comparison(_toy(tmp_path, bootstrap_reps=300), out=tmp_path / "out", seeds=[4], progress=False,
                         backend=StandIn())
    pvp = next(row for row in res.table if row[0] == "PVP")
    assert pvp[4] == "1.00" and pvp[-1] == "1/1"
    assert res.poi_table == [["HG-DAgger", "1.00", "1 vs 1"]]
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [(r["method"], r["status"], r["test_success"]) for r in rows] == [("HG-DAgger", "finished", "0.0"),
                                                                           ("PVP", "finished", "1.0")]


def test_blocks_of_other_comparisons_and_broken_markers():
    a_begin, a_end = markers("a")
    page = f"intro\n{a_begin}\nold a\n{a_end}\nnotes\n"
    out = replace_block(page, "b", f"{markers('b')[0]}\nnew b\n{markers('b')[1]}")
    assert out.startswith(page.rstrip("\n")) and out.rstrip().endswith(markers("b")[1])
    out = replace_block(out, "a", f"{a_begin}\nnew a\n{a_end}")
    assert "old a" not in out and "new a" in out and "new b" in out and out.startswith("intro\n") and "\nnotes\n" in out
    with pytest.raises(GatekitError, match="broken 'a' block"):
        replace_block(f"{a_begin}\nno end\n", "a", "x")
    with pytest.raises(GatekitError, match="broken 'a' block"):
        replace_block(f"{a_end}\n{a_begin}\n", "a", "x")


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)],
                         ids=["ctrl-c", "parent-killed"])
@needs_rliable
def test_a_stopped_comparison_stops_its_runs_cleanly(tmp_path, sig):
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "gatekit.cli", "compare", str(TOY), "--out", str(out), "--no-progress", "--seeds", "0",
           "--only", "HG-DAgger", "--set", "budget.total_steps=200000", "--set", "eval.every_steps=100000"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    run_dir = out / "runs" / "hg-dagger" / "seed0"
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not _episodes_logged(run_dir / "progress.csv", 3):
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[0]
    # SIGINT: what a terminal's Ctrl-C sends to the parent (alone: workers have their own group),
    # which forwards it once; SIGKILL: the parent dies at once and the worker notices by itself
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=150)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), output
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and RunResult.read_status(run_dir) is None:
        time.sleep(0.5)
    res = RunResult.read(run_dir)  # the worker checkpointed and wrote its results
    assert res.status == "interrupted" and 0 < res.total_steps < 200000, output
    assert (run_dir / "checkpoint.pt").is_file()
    assert run_status(run_dir) == "interrupted" and (run_dir / "records.gkr").stat().st_size > 0  # the next call resumes it


@needs_rliable
def test_ctrl_c_while_a_comparison_s_worker_still_imports_interrupts_its_run(tmp_path):
    """A terminal's Ctrl-C reaches a worker that has not yet left the terminal's process group:
    it is still importing gatekit. It must end ``interrupted`` like its siblings (the next call
    runs it), not die of a KeyboardInterrupt mid-import and be reported a failed run."""
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "gatekit.cli", "compare", str(TOY), "--out", str(out), "--no-progress", "--seeds", "0",
           "--only", "HG-DAgger", "--set", "budget.total_steps=200000"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not _spawned_workers(proc.pid):
        time.sleep(0.005)
    assert _spawned_workers(proc.pid), proc.communicate()[0]  # exec'd; importing for about a second
    time.sleep(0.05)  # past the millisecond in which the parent itself ignores SIGINT (the spawn)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals its whole foreground group
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "failed" not in output and "Traceback" not in output, output
    assert "interrupted" in output, output


def _spawned_workers(parent: int) -> list[int]:
    """The multiprocessing spawn children of ``parent`` that have started their interpreter."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent \
                    and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):  # exited meanwhile
            pass
    return found


def _episodes_logged(path: Path, n: int) -> bool:
    return path.is_file() and len(path.read_text().splitlines()) > n


def test_plot_styles_tell_every_method_apart_past_ten_methods() -> None:
    # The MiniGrid comparison has 13 methods; with one colour and marker cycle of ten, method 10
    # drew exactly like method 0 (BC and a DQN-novice row) but for its dashes.
    from gatekit.compare.report import styles
    from gatekit.plots import pyplot

    names = [f"method {i}" for i in range(25)]
    got = styles(names)
    looks = [(st.color, st.marker, st.linestyle) for st in got.values()]
    assert len(set(looks)) == len(names)
    for i in range(10, 25):  # a later method differs from its hue's earlier one in all three
        a, b = got[names[i]], got[names[i - 10]]
        assert a.color != b.color and a.marker != b.marker and a.linestyle != b.linestyle
    tab10 = pyplot().get_cmap("tab10")  # up to ten methods the plots keep their old look
    assert [got[n].color for n in names[:10]] == [tab10(i) for i in range(10)]
    assert {got[n].linestyle for n in names[:10]} == {"-"}
