#!/usr/bin/env python3
"""layers.py - the module graph of src/, and its cycles.

Reads every `crate::a::b` and `super::x` path in src/ (tests inside a file,
after `#[cfg(test)]`, are left out: they may reach anywhere) and prints
the import edges between top-level modules, and between the submodules of
each module. Exits 1 if either graph has a cycle, naming it, or if a
top-level module uses one that is not in a lower layer of the list in
src/lib.rs's module docs (lines `//! N. `a`, `b`: ...`), or if that list
leaves out a module: the layers the docs describe are the code's.

Usage: python3 .ci/layers.py [--edges]
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(__file__), "..", "src")


def module_of(path):
    """src/a/b.rs -> ['a', 'b']; src/a/mod.rs -> ['a']; src/lib.rs -> []."""
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def code(text):
    """The text before the file's test module, comments dropped."""
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return text


def paths(text, here):
    """Every module path the text names, absolute (a list of names)."""
    out = []
    for m in re.finditer(r"\bcrate((?:::\w+)+)", text):
        out.append(m.group(1).split("::")[1:])
    for m in re.finditer(r"\b((?:super::)+)(\w+)", text):
        ups = m.group(1).count("super::")
        base = here[: len(here) - ups] if ups <= len(here) else []
        out.append(base + [m.group(2)])
    # `use crate::{a, b::c}` groups
    for m in re.finditer(r"\bcrate::\{([^}]*)\}", text):
        for part in m.group(1).split(","):
            part = part.strip()
            if part:
                out.append(re.split(r"::", part))
    # `use super::{a, b::c}` groups
    for m in re.finditer(r"\b((?:super::)+)\{([^}]*)\}", text):
        ups = m.group(1).count("super::")
        base = here[: len(here) - ups] if ups <= len(here) else []
        for part in m.group(2).split(","):
            part = part.strip().lstrip("{")
            if part and part != "self":
                out.append(base + re.split(r"::", part))
    return out


def declared_layers():
    """{module: layer number} from src/lib.rs's `//! N. `a`, `b`: ...` lines."""
    layers = {}
    for line in open(os.path.join(SRC, "lib.rs")):
        m = re.match(r"//! (\d+)\. (.*?):", line)
        if m:
            for name in re.findall(r"`(\w+)`", m.group(2)):
                layers[name] = int(m.group(1))
    return layers


def cycles(edges):
    """Each cycle found by depth-first search, as a list of nodes."""
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return found


def knots(edges):
    """The strongly connected components of two parts or more: parts that
    each reach every other by imports (Tarjan's algorithm)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def folder_edges(files):
    """Import edges between the parts of every folder, at every depth.

    A folder's parts are its children (a file, or a subfolder with all it
    holds) and its own file (`mod.rs`, `lib.rs`, or `a.rs` beside `a/`),
    named "(mod)". A child uses another when any file in it names a path
    into the other; a child uses "(mod)" when it names an item of the
    folder's own file (`super::Credentials`); the own file uses a child when
    it names one (`custom::request`, or `pub use plan::Plan`: what the
    folder re-exports it depends on).
    Returns {folder (tuple): {part: set(parts)}}.
    """
    modules = {tuple(module_of(f)) for f in files}
    children = {}
    for m in modules:
        for i in range(len(m)):
            children.setdefault(m[:i], set()).add(m[i])
    edges = {}
    for f in files:
        here = tuple(module_of(f))
        raw = open(f).read()
        text = code(raw)
        targets = [tuple(p) for p in paths(text, list(here))]
        # The own file's bare paths into its children: `child::item`.
        own = children.get(here, set())
        if own:
            body = "\n".join(l for l in text.splitlines() if not re.match(r"\s*(pub(\([^)]*\))?\s+)?mod\b", l))
            for m in re.finditer(r"(?<![:\w])(\w+)::", body):
                if m.group(1) in own:
                    targets.append(here + (m.group(1),))
            for m in re.finditer(r"\bself::(\w+)", body):
                if m.group(1) in own:
                    targets.append(here + (m.group(1),))
        for t in targets:
            # The deepest folder holding both ends; here and t part ways below it.
            common = 0
            while common < min(len(here), len(t)) and here[common] == t[common]:
                common += 1
            folder = here[:common]
            if folder not in children:
                continue
            a = here[common] if len(here) > common else "(mod)"
            if len(t) > common and t[common] in children[folder]:
                b = t[common]
            elif len(t) > common:
                b = "(mod)"  # an item of the folder's own file
            else:
                continue
            if a != b and not (folder == () and "(mod)" in (a, b)):
                edges.setdefault(folder, {}).setdefault(a, set()).add(b)
    return edges


def main():
    files = []
    for root, _, names in os.walk(SRC):
        files += [os.path.join(root, n) for n in names if n.endswith(".rs") and n != "main.rs"]
    tops = {module_of(f)[0] for f in files if module_of(f)}
    top_edges = {}
    for f in files:
        here = module_of(f)
        if not here:
            continue
        text = code(open(f).read())
        for p in paths(text, here):
            if p and p[0] in tops and p[0] != here[0]:
                top_edges.setdefault(here[0], set()).add(p[0])
    if "--edges" in sys.argv:
        for a in sorted(top_edges):
            print(f"{a} -> {', '.join(sorted(top_edges[a]))}")
    bad = [("top-level", c) for c in cycles(top_edges)]
    inner = folder_edges(files)
    for folder, edges in sorted(inner.items()):
        if "--edges" in sys.argv and folder:
            for a in sorted(edges):
                print(f"  {'::'.join(folder)}: {a} -> {', '.join(sorted(edges[a]))}")
        if not folder:
            continue
        for group in knots(edges):
            # A folder's own file and one child that use each other are
            # allowed; parts tied in a loop of three or more are not.
            if len(group) >= 3 or "(mod)" not in group:
                bad.append(("src/" + "/".join(folder), group + [group[0]]))
    for where, c in bad:
        print(f"loop ({where}): {', '.join(c[:-1])} use each other")
    layers = declared_layers()
    wrong = [f"src/lib.rs lists no layer for module {m}" for m in sorted(tops - set(layers))]
    wrong += [f"src/lib.rs lists module {m}, which src/ does not have" for m in sorted(set(layers) - tops)]
    for a in sorted(top_edges):
        for b in sorted(top_edges[a]):
            if a in layers and b in layers and layers[b] >= layers[a]:
                wrong.append(f"{a} (layer {layers[a]}) uses {b} (layer {layers[b]}): not a lower layer")
    for w in wrong:
        print(w)
    if bad or wrong:
        sys.exit(1)
    print(
        f"no import cycles: {len(tops)} top-level modules in {len(set(layers.values()))} layers, "
        f"{sum(len(v) for v in top_edges.values())} edges, each to a lower layer; no loop inside any of "
        f"{len([f for f in inner if f])} folders"
    )


if __name__ == "__main__":
    main()
