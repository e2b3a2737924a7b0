#!/usr/bin/env python3
"""Draws benchgen's top-level module graph from the code: which top-level module of the library
uses which (`crate::NAME` paths and `use crate::{NAME, ...}`), outside test code (`#[cfg(test)]`
modules and `*_tests.rs`/`tests.rs` files). Prints each module's uses and any cycle, and exits
non-zero when there is one.

Usage: tools/module_graph.py [--dot]    (--dot: Graphviz output instead)
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def top_modules():
    text = open(os.path.join(ROOT, "lib.rs")).read()
    return re.findall(r"^pub mod (\w+);", text, re.M)


def strip_tests(text):
    """Drops `#[cfg(test)] mod name { ... }` blocks (brace-matched) and comments."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod \w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return re.sub(r"//[^\n]*", "", "".join(out))


def main():
    mods = top_modules()
    uses = {m: set() for m in mods}
    for m in mods:
        paths = [os.path.join(ROOT, m + ".rs")]
        d = os.path.join(ROOT, m)
        for base, _, files in os.walk(d):
            paths += [os.path.join(base, f) for f in files if f.endswith(".rs")]
        for p in paths:
            if not os.path.exists(p) or re.search(r"(^|_)tests?\.rs$", os.path.basename(p)):
                continue
            text = strip_tests(open(p).read())
            for target in re.findall(r"crate::(\w+)", text):
                if target in uses and target != m:
                    uses[m].add(target)
            for group in re.findall(r"use crate::\{([^;]*)\};", text, re.S):
                for target in re.findall(r"(?:^|[,{\s])(\w+)(?=::|\s*[,}]|$)", group):
                    if target in uses and target != m:
                        uses[m].add(target)
    if "--dot" in sys.argv:
        print("digraph benchgen {")
        for m in mods:
            for t in sorted(uses[m]):
                print(f"  {m} -> {t};")
        print("}")
    else:
        for m in mods:
            print(f"{m:12} -> {', '.join(sorted(uses[m])) or '-'}")
    # Cycles: strongly connected components of more than one module.
    index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in uses[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for m in mods:
        if m not in index:
            visit(m)
    for c in sccs:
        print("cycle:", " <-> ".join(c), file=sys.stderr)
    if not sccs and "--dot" not in sys.argv:
        print("no cycles between top-level modules")
    return 1 if sccs else 0


if __name__ == "__main__":
    sys.exit(main())
