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


def main():
    files = []
    for root, _, names in os.walk(SRC):
        files += [os.path.join(root, n) for n in names if n.endswith(".rs")]
    tops = {module_of(f)[0] for f in files if module_of(f)}
    top_edges, sub_edges = {}, {}
    for f in files:
        here = module_of(f)
        if not here:
            continue
        text = code(open(f).read())
        for p in paths(text, here):
            if not p or p[0] not in tops:
                continue
            if p[0] != here[0]:
                top_edges.setdefault(here[0], set()).add(p[0])
            elif len(here) >= 2 and len(p) >= 2 and p[1] != here[1]:
                # Inside module here[0]: submodule here[1] uses p[1].
                subs = {module_of(g)[1] for g in files if len(module_of(g)) >= 2 and module_of(g)[0] == here[0]}
                if p[1] in subs:
                    sub_edges.setdefault(here[0], {}).setdefault(here[1], set()).add(p[1])
    if "--edges" in sys.argv:
        for a in sorted(top_edges):
            print(f"{a} -> {', '.join(sorted(top_edges[a]))}")
    bad = [("top-level", c) for c in cycles(top_edges)]
    for module, edges in sorted(sub_edges.items()):
        bad += [(module, c) for c in cycles(edges)]
    for where, c in bad:
        print(f"cycle ({where}): {' -> '.join(c)}")
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
        f"{sum(len(v) for v in top_edges.values())} edges, each to a lower layer"
    )


if __name__ == "__main__":
    main()
