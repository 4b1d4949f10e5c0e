"""Every component's options, read from its signature and docstring: ``gatekit show NAME``,
``gatekit list --verbose``, and ``docs/components.md`` (``gatekit list --markdown``).

One source, three views: a component's recipe keys are its constructor's (or factory's)
keyword arguments, less those gatekit passes itself (:data:`PROVIDED`); the type is the
annotation as written, the default is the signature's, and the one-line doc is the
argument's entry in the Google-style ``Args:`` section of the docstring. The recipe's own
sections (``budget``, ``eval``, ``log``, ``data``) are read from their dataclasses in
:mod:`gatekit.config` the same way (field docstrings). ``tests/test_components.py`` checks that
``docs/components.md`` is what this module renders, so the doc cannot drift from the code.

Example:
    >>> doc = describe("criterion", "action-gap")
    >>> [p.name for p in doc.params][:1], doc.params[0].default
    (['threshold'], '0.1')
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatekit.errors import GatekitError

PROVIDED: dict[str, tuple[str, ...]] = {
    "env": ("split", "seed"),
    "expert": ("env",),
    "criterion": (),
    "learner": ("observation_space", "action_space", "seed"),
}
"""Arguments gatekit passes itself, per role: a recipe may not set them, so they are not shown."""

ROLE_TITLES = {"criterion": "Criteria (gates)", "learner": "Learners", "env": "Envs", "expert": "Experts"}
SECTIONS = ("budget", "eval", "log", "data")

REQUIRED = "required"


@dataclass
class Param:
    """One recipe key of a component."""

    name: str
    type: str
    default: str
    """The default as YAML would write it, or ``required``."""
    doc: str = ""


@dataclass
class ComponentDoc:
    """What ``gatekit show`` prints for one component."""

    role: str
    name: str
    target: str
    summary: str
    doc: str = ""
    params: list[Param] = field(default_factory=list)
    extra_keys: bool = False
    """The component takes further keys (``**kwargs``), passed on as they are."""
    error: str | None = None
    """Why the component could not be read (an optional package it needs is missing)."""


def registries() -> dict[str, Any]:
    from gatekit.criteria import CRITERIA
    from gatekit.envs import ENVS
    from gatekit.experts import EXPERTS
    from gatekit.learners import LEARNERS

    return {"criterion": CRITERIA, "learner": LEARNERS, "env": ENVS, "expert": EXPERTS}


# -- reading a component ---------------------------------------------------------------------------
def _yaml(value: Any) -> str:
    import yaml

    if isinstance(value, tuple):
        value = list(value)
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    except yaml.YAMLError:
        return repr(value)
    return text.removesuffix("\n...").removesuffix("...").strip()


def _annotation(a: Any) -> str:
    if a is inspect.Parameter.empty:
        return ""
    return a if isinstance(a, str) else inspect.formatannotation(a)


def arg_docs(doc: str | None) -> dict[str, str]:
    """The ``Args:`` entries of a Google-style docstring, each joined into one line.

    Example:
        >>> arg_docs('''Do it.
        ...
        ... Args:
        ...     lr: the learning rate,
        ...         per step.
        ...     seed: the seed.
        ... ''')
        {'lr': 'the learning rate, per step.', 'seed': 'the seed.'}
    """
    if not doc:
        return {}
    out: dict[str, str] = {}
    for block in _args_sections(inspect.cleandoc(doc).splitlines()):
        indent, current = _lead(block[0]), None
        for line in block:
            m = re.match(r"\s*\**([A-Za-z_][A-Za-z0-9_]*)(\s*\([^)]*\))?\s*:\s*(.*)", line)
            if _lead(line) == indent and m:
                for name in m.group(1).split(","):
                    current = name.strip()
                    out[current] = m.group(3).strip()
            elif current is not None:  # an entry's continuation line
                out[current] = f"{out[current]} {line.strip()}".strip()
    return out


def _lead(line: str) -> int:
    return len(line) - len(line.lstrip())


def _args_sections(lines: list[str]) -> list[list[str]]:
    """The non-blank lines of each ``Args:`` section (header left out): those after the
    header up to the next line that is not indented (the next section)."""
    sections: list[list[str]] = []
    section: list[str] | None = None
    for line in lines:
        if re.fullmatch(r"(Args|Arguments|Parameters):\s*", line.strip()) and not line.startswith(" "):
            section = []
            sections.append(section)
        elif section is not None and line.strip():
            if _lead(line) == 0:
                section = None
            else:
                section.append(line)
    return [s for s in sections if s]


def _first_line(doc: str | None) -> str:
    if not doc:
        return ""
    text = inspect.cleandoc(doc).split("\n\n")[0]
    return " ".join(text.split())


def read_target(obj: Any, provided: tuple[str, ...] = ()) -> tuple[str, list[Param], bool]:
    """(one-line doc, params, takes **kwargs) of a class or factory function."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(obj)
    docs: dict[str, str] = {}
    sources = [obj.__doc__, getattr(target, "__doc__", None)] if inspect.isclass(obj) else [obj.__doc__]
    if inspect.isclass(obj):  # arguments a subclass passes on to its base are documented there
        sources += [base.__doc__ for base in obj.__mro__[1:]] + [getattr(vars(base).get("__init__"), "__doc__", None)
                                                                  for base in obj.__mro__[1:]]
    for src in sources:
        for k, v in arg_docs(src).items():
            docs.setdefault(k, v)
    params, extra = [], False
    for name, p in sig.parameters.items():
        if name == "self" or name in provided or p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            extra = True
            continue
        default = REQUIRED if p.default is p.empty else _yaml(p.default)
        params.append(Param(name=name, type=_annotation(p.annotation), default=default, doc=docs.get(name, "")))
    return _first_line(obj.__doc__), params, extra


def describe(role: str, name: str) -> ComponentDoc:
    """The options of the component registered as ``name`` in the ``role`` registry.

    Raises:
        GatekitError: no such role or name.
    """
    regs = registries()
    if role not in regs:
        raise GatekitError(f"show: unknown role '{role}'; valid: {', '.join(regs)}")
    reg = regs[role]
    prefix = name.removesuffix(":<id>") if name.endswith(":<id>") else None
    provided = PROVIDED.get(role, ())
    if prefix is not None and prefix in reg.prefixes():  # e.g. gym:<id>, the id is the first argument
        target: Any = reg._prefixes[prefix]
        summary = reg.prefixes()[prefix]
    else:
        target, summary = reg.target(name), reg.help(name)
    doc = ComponentDoc(role=role, name=name, target=target if isinstance(target, str) else repr(target),
                       summary=summary)
    try:
        obj = reg.get(f"{prefix}:x") if prefix is not None else reg.get(name)
        if prefix is not None:
            obj = obj.func  # the factory behind the partial that binds the id
            provided = (*provided, next(iter(inspect.signature(obj).parameters)))
    except GatekitError as exc:  # a missing optional package: say which, keep the rest
        doc.error = str(exc)
        return doc
    doc.doc, doc.params, doc.extra_keys = read_target(obj, provided)
    return doc


def find(name: str, role: str | None = None) -> list[ComponentDoc]:
    """Every registered component called ``name`` (a name may fill several roles, e.g. ``aim``),
    or a recipe section (``budget``, ``eval``, ``log``, ``data``)."""
    from gatekit.errors import nearest

    if name in SECTIONS and role in (None, "section"):
        return [section_doc(name)]
    regs = registries()
    roles = [role] if role else list(regs)
    def has(reg: Any) -> bool:
        return name in reg.names() or (name.endswith(":<id>") and name.removesuffix(":<id>") in reg.prefixes())

    found = [describe(r, name) for r in roles if r in regs and has(regs[r])]
    if not found:
        every = [n for r in roles if r in regs for n in regs[r].names()] + list(SECTIONS)
        raise GatekitError(f"show: no component '{name}'{f' of role {role}' if role else ''}; {nearest(name, every)}")
    return found


def all_components() -> list[ComponentDoc]:
    """Every registered component (and prefix, as ``gym:<id>``), role by role."""
    return [describe(role, name) for role, reg in registries().items()
            for name in [*reg.names(), *(f"{p}:<id>" for p in reg.prefixes())]]


# -- the recipe's own sections --------------------------------------------------------------------
def _field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under each field of a dataclass (read from its source)."""
    import gatekit.config as config

    tree = ast.parse(Path(config.__file__).read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            out, last = {}, None
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    last = stmt.target.id
                elif (last and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                      and isinstance(stmt.value.value, str)):
                    out[last] = " ".join(stmt.value.value.split())
                    last = None
                else:
                    last = None
            return out
    return {}


def section_doc(name: str) -> ComponentDoc:
    """The keys of a recipe section (``budget``, ``eval``, ``log``, ``data``)."""
    from gatekit.config import Recipe

    cls = next(f.type for f in dataclasses.fields(Recipe) if f.name == name)
    import gatekit.config as config

    cls = getattr(config, cls) if isinstance(cls, str) else cls
    docs = _field_docs(cls)
    params = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = _yaml(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _yaml(f.default_factory())
        else:
            default = REQUIRED
        params.append(Param(name=f.name, type=_annotation(f.type), default=default, doc=docs.get(f.name, "")))
    return ComponentDoc(role="section", name=name, target=f"gatekit.config:{cls.__name__}",
                        summary=_first_line(cls.__doc__), doc=_first_line(cls.__doc__), params=params)


# -- rendering -------------------------------------------------------------------------------------
def render_text(doc: ComponentDoc, width: int = 100) -> str:
    """What ``gatekit show`` prints."""
    title = f"{doc.name} ({doc.role})" if doc.role != "section" else f"recipe section '{doc.name}'"
    lines = [title, f"  {doc.summary}" if doc.summary else "", f"  from {doc.target}"]
    if doc.error:
        lines.append(f"  cannot read its options here: {doc.error}")
        return "\n".join(x for x in lines if x)
    if doc.doc and doc.doc != doc.summary:
        lines += textwrap.wrap(doc.doc, width, initial_indent="  ", subsequent_indent="  ")
    if not doc.params:
        lines.append("  options: none")
    for p in doc.params:
        head = f"  {p.name}: {p.type or 'any'} = {p.default}"
        lines.append(head)
        if p.doc:
            lines += textwrap.wrap(p.doc, width, initial_indent="      ", subsequent_indent="      ")
    if doc.extra_keys:
        lines.append("  (further keys are passed on as they are)")
    return "\n".join(x for x in lines if x)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown_one(doc: ComponentDoc) -> str:
    """One component's section of ``docs/components.md``."""
    head = f"### `{doc.name}`" if doc.role == "section" else f"### {doc.role} `{doc.name}`"
    out = [head, ""]
    if doc.summary:
        out += [doc.summary, ""]
    out.append(f"`{doc.target}`" + (f": {doc.doc}" if doc.doc and doc.doc != doc.summary else ""))
    out.append("")
    if doc.error:
        out += [f"Options not readable: {doc.error}", ""]
        return "\n".join(out)
    if doc.params:
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        out += [f"| `{p.name}` | `{_cell(p.type)}` | `{_cell(p.default)}` | {_cell(p.doc)} |" for p in doc.params]
    else:
        out.append("No options.")
    if doc.extra_keys:
        out += ["", "Further keys are passed on as they are."]
    out.append("")
    return "\n".join(x for x in out if x is not None)


MARKDOWN_HEAD = """# Components and their options

Generated by `gatekit list --markdown > docs/components.md` from each component's signature and
docstring (the same source as `gatekit show NAME`); `tests/test_components.py` fails when this
file and the code disagree. Every key below goes into the component's recipe section next to
its `id` (`criterion: {id: aim, delta: 0.1}`) or on the command line (`--set criterion.delta=0.1`).
Keys gatekit sets itself (an env's `split` and `seed`, an expert's `env`, a learner's spaces and
`seed`) are not listed: a recipe may not set them.
"""


def render_markdown(docs: list[ComponentDoc] | None = None) -> str:
    """The whole of ``docs/components.md``."""
    docs = all_components() if docs is None else docs
    parts = [MARKDOWN_HEAD]
    for role in ROLE_TITLES:
        parts.append(f"## {ROLE_TITLES[role]}\n")
        parts += [render_markdown_one(d) for d in docs if d.role == role]
    parts.append("## Recipe sections\n")
    parts += [render_markdown_one(section_doc(s)) for s in SECTIONS]
    return "\n".join(parts).rstrip() + "\n"


def split_markdown(text: str) -> dict[str, str]:
    """``docs/components.md`` cut into its component sections, by heading."""
    out: dict[str, str] = {}
    for block in re.split(r"(?m)^(?=### )", text):
        if block.startswith("### "):
            head = block.splitlines()[0]
            out[head] = block.split("\n## ")[0].rstrip() + "\n"
    return out


# -- the resolved recipe ---------------------------------------------------------------------------
def defaults_of(fn: Any, provided: tuple[str, ...] = ()) -> dict[str, Any]:
    """The recipe keys of component ``fn`` that have a default, with it (in signature order).

    Only defaults a recipe could state are returned: plain YAML values that pass the key's type
    check (so that the resolved recipe loads back as it was saved).
    """
    import typing

    import yaml

    from gatekit.arguments import check_type

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return {}
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # annotations naming packages that are not installed; partials
        hints = {}
    out: dict[str, Any] = {}
    for name, p in sig.parameters.items():
        if name == "self" or name in provided or p.default is p.empty or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        value = list(p.default) if isinstance(p.default, tuple) else p.default
        try:
            yaml.safe_dump(value)
            out[name] = check_type(hints.get(name, Any), value, name)
        except (yaml.YAMLError, GatekitError):
            continue
    return out


def with_defaults(recipe: Any) -> Any:
    """``recipe`` with every default of its four components written out (the recipe's own keys
    win; a component that cannot be resolved here is kept as it is). The dataclass sections
    (budget, eval, log, data) carry their defaults already."""
    regs = registries()
    filled = {}
    for section in ("env", "expert", "criterion", "learner"):
        comp = getattr(recipe, section)
        try:
            fn = regs[section].get(comp.id)
        except GatekitError:
            filled[section] = comp
            continue
        defaults = defaults_of(fn, PROVIDED[section])
        kwargs = {k: comp.kwargs.get(k, v) for k, v in defaults.items()}
        kwargs.update({k: v for k, v in comp.kwargs.items() if k not in kwargs})
        filled[section] = dataclasses.replace(comp, kwargs=kwargs)  # keeps the env's n_envs
    return dataclasses.replace(recipe, **filled)
