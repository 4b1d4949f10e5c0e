"""Every component documents its options from one source: ``gatekit show``, ``gatekit list
--verbose`` and docs/components.md agree with the code, and cannot drift from it."""

import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from gatekit.cli import main
from gatekit.components import (
    SECTIONS,
    all_components,
    describe,
    render_markdown,
    render_markdown_one,
    section_doc,
    split_markdown,
)
from gatekit.config import apply_overrides
from gatekit.errors import RecipeWarning

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs/components.md"
REGEN = "regenerate it: gatekit list --markdown > docs/components.md"


def test_components_md_is_what_the_code_says():
    docs = all_components()
    readable = [d for d in docs if d.error is None]
    text = DOC.read_text()
    if len(readable) == len(docs):  # every optional stack installed: the whole file, byte for byte
        assert text == render_markdown(docs), f"docs/components.md is stale; {REGEN}"
        return
    # elsewhere (the newest-stack environment): every component that can be read here
    sections = split_markdown(text)
    for d in readable:
        want = render_markdown_one(d)
        head = want.splitlines()[0]
        assert sections.get(head) == want, f"{head} differs from the code; {REGEN}"


def test_every_registered_component_and_section_is_in_the_doc():
    heads = set(split_markdown(DOC.read_text()))
    for d in all_components():
        assert f"### {d.role} `{d.name}`" in heads
    for s in SECTIONS:
        assert f"### `{s}`" in heads


def test_every_option_has_a_type_a_default_and_a_doc():
    undocumented = [f"{d.role} {d.name}: {p.name}" for d in [*all_components(), *map(section_doc, SECTIONS)]
                    if d.error is None for p in d.params if not (p.doc and p.type and p.default)]
    assert not undocumented, f"options without a doc line (add them to the Args: section): {undocumented}"


def test_show_prints_what_the_doc_lists():
    runner = CliRunner()
    for d in all_components():
        if d.error is not None:
            continue
        res = runner.invoke(main, ["show", d.name, "--role", d.role])
        assert res.exit_code == 0, res.output
        for p in d.params:
            assert f"  {p.name}: {p.type} = {p.default}" in res.output, (d.name, p.name)
    res = runner.invoke(main, ["show", "aim"])  # a criterion and a learner
    assert "aim (criterion)" in res.output and "aim (learner)" in res.output
    res = runner.invoke(main, ["show", "budget"])
    assert "total_steps: int = required" in res.output
    res = runner.invoke(main, ["show", "aimm"])
    assert res.exit_code == 2 and "did you mean 'aim'" in res.stderr


def test_list_verbose_shows_every_option():
    res = CliRunner().invoke(main, ["list", "--verbose"])
    assert res.exit_code == 0
    doc = describe("learner", "pvp")
    if doc.error is None:
        assert all(f"  {p.name}: " in res.output for p in doc.params)
    assert "gym:<id> (env)" in res.output


def test_changing_an_id_by_set_warns_about_the_keys_carried_over():
    raw = {"learner": {"id": "bc", "batch_size": 64, "net_arch": [8]}}
    with pytest.warns(RecipeWarning, match=r"learner keys batch_size, net_arch \(written for 'bc'\) are kept"):
        out = apply_overrides(raw, ["learner.id=mlp-bc"])
    assert out["learner"] == {"id": "mlp-bc", "batch_size": 64, "net_arch": [8]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply_overrides(raw, ["learner={id: mlp-bc}"])["learner"] == {"id": "mlp-bc"}
        apply_overrides(raw, ["learner.id=bc", "learner.batch_size=32"])  # same id: nothing to say
    res = CliRunner().invoke(main, ["train", str(ROOT / "recipes/hg_cartpole.yaml"), "--dry-run",
                                    "--set", "learner.id=mlp-bc"])
    assert "gatekit: warning: --set learner.id=mlp-bc" in res.stderr
