"""Bounded, strict YAML reading: what every recipe, comparison and override goes through.

A recipe is a few KB of plain sections, lists and scalars, but it may come from anywhere (a
shared file, a ``--set`` on the command line), and everything downstream walks it with its
aliases expanded. Plain ``yaml.safe_load`` would accept what no recipe needs and what costs
time or silently changes meaning, so :func:`safe_load_bounded` refuses:

- alias bombs ("billion laughs"): a kilobyte of nested aliases that expands to billions of
  values (at most :data:`MAX_YAML_NODES` values once aliases are expanded), and recursive
  aliases (a recipe is a tree);
- deep nesting, which would exhaust the stack of whatever recurses over it (at most
  :data:`MAX_YAML_DEPTH` levels, counted while streaming and again through aliases);
- a key twice in one mapping, where YAML keeps the last one without a word;
- tags that construct objects (``!!python/...``) or that the safe loader does not know
  (``!custom``): ``yaml.SafeLoader`` raises on them, and callers report a YAML error.

Every refusal is a one-line :class:`~gatekit.errors.ConfigError` naming the file (``what``)
and, where it can, the line.

Example:
    >>> safe_load_bounded("a: 1\\nb: [x, y]", what="recipe: 'demo.yaml'")
    {'a': 1, 'b': ['x', 'y']}
    >>> safe_load_bounded("a: 1\\na: 2", what="recipe: 'demo.yaml'")
    Traceback (most recent call last):
    ...
    gatekit.errors.ConfigError: recipe: 'demo.yaml': key 'a' appears twice in one section (line 2); YAML would keep only the last: remove one
"""

from __future__ import annotations

from typing import Any

import yaml

from gatekit.errors import ConfigError

MAX_YAML_BYTES = 1 << 20
"""The largest YAML file gatekit reads (recipes are a few KB)."""
MAX_YAML_DEPTH = 64
"""The deepest nesting of sections and lists, counting through aliases."""
MAX_YAML_NODES = 100_000
"""The most values a YAML document may hold once its aliases are expanded. Aliases are
expanded by everything that walks a recipe (overrides, the loader, ``recipe.yaml``), so a
kilobyte of nested aliases (a "billion laughs") would otherwise take forever."""


def safe_load_bounded(text: str, *, what: str) -> Any:
    """``yaml.safe_load(text)`` with bounds: at most :data:`MAX_YAML_BYTES`, nesting at most
    :data:`MAX_YAML_DEPTH`, at most :data:`MAX_YAML_NODES` values with aliases expanded, no
    recursive aliases, and no key twice in one mapping (YAML keeps the last silently).

    Raises:
        ConfigError: a bound is exceeded or a key repeats (one line naming ``what``).
        yaml.YAMLError: the text is not YAML (callers name the line).
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{what} is {size} bytes, more than the {MAX_YAML_BYTES} a recipe may have; "
                          f"is it the right file?")
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # streaming: no recursion, no expansion
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(f"{what} nests sections or lists deeper than {MAX_YAML_DEPTH} levels "
                                  f"(line {event.start_mark.line + 1}); flatten it")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_graph(node, what)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_yaml_graph(root: yaml.Node, what: str) -> None:
    """Expanded size and depth of a composed YAML graph (aliases are shared nodes), computed
    once per node without recursion; duplicate keys; recursive aliases."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _yaml_children(node)
        if done:
            open_.discard(key)
            _close_node(node, children, size, depth, what)
            continue
        if key in size:
            continue
        if key in open_:
            raise ConfigError(f"{what} has a recursive alias (line {node.start_mark.line + 1}); a recipe is a tree")
        open_.add(key)
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node, what)
        stack.append((node, True))
        for child in children:
            if id(child) in open_:
                raise ConfigError(f"{what} has a recursive alias (line {child.start_mark.line + 1}); "
                                  f"a recipe is a tree")
            if id(child) not in size:
                stack.append((child, False))


def _close_node(node: yaml.Node, children: list[yaml.Node], size: dict[int, int], depth: dict[int, int],
                what: str) -> None:
    """Size and depth of ``node`` from its children's (all measured already), within the limits."""
    key = id(node)
    size[key] = 1 + sum(size[id(c)] for c in children)
    depth[key] = (not isinstance(node, yaml.ScalarNode)) + max((depth[id(c)] for c in children), default=0)
    if size[key] > MAX_YAML_NODES:
        raise ConfigError(f"{what} expands to more than {MAX_YAML_NODES} values through its aliases "
                          f"(line {node.start_mark.line + 1}); write the values out or use fewer aliases")
    if depth[key] > MAX_YAML_DEPTH:
        raise ConfigError(f"{what} nests deeper than {MAX_YAML_DEPTH} levels through its aliases "
                          f"(line {node.start_mark.line + 1}); flatten it")


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_duplicate_keys(node: yaml.MappingNode, what: str) -> None:
    seen: set[tuple[str, str]] = set()
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
            continue  # a merge (<<) may be overridden by the mapping's own keys, by design
        ident = (k.tag, k.value)
        if ident in seen:
            raise ConfigError(f"{what}: key '{k.value}' appears twice in one section (line {k.start_mark.line + 1}); "
                              f"YAML would keep only the last: remove one")
        seen.add(ident)
