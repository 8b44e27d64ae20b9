#!/usr/bin/env python3
"""The crate's layout, checked by `make test`: no cycle between modules, no file over 700 lines, and every file
opening with a `//!` comment saying what it owns.

A module depends on another when it names a path into it: `crate::a::b…`, `super::…` (any number of them),
`self::…`, or a child module's name after its `mod x;` declaration. The target is the longest prefix of the path
that is a file (`src/a/b.rs` or `src/a/b/mod.rs`). Test files (`tests.rs`, `*_tests.rs`) are left out: they may
reach anywhere. Prints each cycle with its edges; exits 1 on any failure.

    python3 scripts/layout.py [src] [--max-lines 700]
"""
import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\buse\s+(crate|super|self)::\{([^;]*)\};", re.S)
CHILD = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;", re.M)


def module_of(path, src):
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def resolve(mods, target):
    for n in range(len(target), 0, -1):
        if tuple(target[:n]) in mods:
            return tuple(target[:n])
    return None


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = Path(args[0] if args else "src").resolve()
    max_lines = int(sys.argv[sys.argv.index("--max-lines") + 1]) if "--max-lines" in sys.argv else 700
    files = [p for p in sorted(src.rglob("*.rs")) if p.name != "tests.rs" and not p.name.endswith("_tests.rs")]
    mods = {module_of(p, src): p for p in files}
    edges = {m: set() for m in mods}
    failures = []
    for m, p in mods.items():
        raw = p.read_text(errors="replace")
        if not raw.lstrip().startswith("//!"):
            failures.append(f"no opening //! comment: {p.relative_to(src.parent)}")
        text = re.sub(r"//[^\n]*", "", raw)
        refs = [(root, [s for s in tail.split("::") if s]) for root, tail in PATH.findall(text)]
        for root, body in GROUP.findall(text):
            for item in body.split(","):
                first = item.strip().split("::")[0].strip("{} \n")
                if first:
                    refs.append((root, [first]))
        for child in CHILD.findall(text):
            for tail in re.findall(r"(?<![:\w])" + child + r"((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
                refs.append(("self", [child] + [s for s in tail.split("::") if s]))
        # A file's own module path; `super` from a plain file (a.rs) is its parent, from a mod.rs its grandparent.
        is_dir = p.name in ("mod.rs", "lib.rs", "main.rs")
        for root, segs in refs:
            if root == "crate":
                target = segs
            else:
                base = list(m)
                if root == "super":
                    base = base[:-1]
                    while segs and segs[0] == "super":
                        base, segs = base[:-1], segs[1:]
                elif not is_dir:
                    base = base  # self:: in a file is the file's own module
                target = base + segs
            r = resolve(mods, target)
            if r is not None and r != m and r != ():
                edges[m].add(r)
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs = {}, {}, [], set(), []
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                sccs.append(comp)

    for v in mods:
        if v not in index:
            visit(v)
    name = lambda m: "::".join(m) or "crate"
    for comp in sccs:
        failures.append("cycle: " + ", ".join(sorted(name(c) for c in comp)))
        for a in sorted(comp):
            for b in sorted(edges[a] & set(comp)):
                failures.append(f"  {name(a)} -> {name(b)}")
    for p in mods.values():
        n = sum(1 for _ in p.open())
        if n > max_lines:
            failures.append(f"over {max_lines} lines: {p.relative_to(src.parent)} ({n})")
    for f in failures:
        print(f)
    print(f"layout: {len(mods)} modules, {sum(len(e) for e in edges.values())} dependencies, "
          f"{len(sccs)} cycles, {len(failures)} problems")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
