#!/usr/bin/env python3
"""import-cycles.py [SRC] -- the import cycles of a Rust crate's modules, at file level and
between its top-level modules, from its `use crate::…`/`super::…` paths (comments and the test
modules left out), and the pure pod core's rule: no file under `pod/` imports the executor, the
prober, the reporters, the kubelet API, static pods or the clock, nor uses threads, locks, the
filesystem, the network, processes, the environment, logging or the time of day. Prints one line
per cycle or breach; exits 1 if there is any."""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "src")
mods = {}
for dp, _, files in os.walk(root):
    for f in files:
        if f.endswith(".rs"):
            p = os.path.join(dp, f)
            parts = os.path.relpath(p, root)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = []
            mods["::".join(parts)] = p


def resolve(cur, path):
    segs = path.split("::")
    if segs[0] == "crate":
        base, segs = [], segs[1:]
    elif segs[0] == "super":
        base = (cur.split("::") if cur else [])[:-1]
        segs = segs[1:]
        while segs and segs[0] == "super":
            base, segs = base[:-1], segs[1:]
    elif segs[0] == "self":
        base, segs = cur.split("::"), segs[1:]
    else:
        return None
    full = base + segs
    for i in range(len(full), 0, -1):
        m = "::".join(full[:i])
        if m in mods:
            return m
    return None


edges = {m: set() for m in mods}
for m, p in mods.items():
    lines = [l for l in open(p).read().split("\n") if not l.lstrip().startswith("//")]
    src = "\n".join(lines)
    i = src.find("#[cfg(test)]\nmod tests")
    if i >= 0:
        src = src[:i]
    for mm in re.finditer(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)", src):
        t = resolve(m, mm.group(1))
        if t and t != m and not t.startswith(m + "::") and not m.startswith(t + "::"):
            edges[m].add(t)


def sccs(graph):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


files = sccs(edges)
top = {}
for m, ts in edges.items():
    a = m.split("::")[0] if m else "crate"
    for t in ts:
        b = t.split("::")[0]
        if a != b:
            top.setdefault(a, set()).add(b)
for c in files:
    print("file-level cycle:", " <-> ".join(c))
for c in sccs(top):
    print("module-level cycle:", " <-> ".join(c))
# The pure core: what `pod/` may not name outside its tests.
CORE = "pod"
CORE_MAY_NOT_IMPORT = {"executor", "probe", "report", "server", "static_pods", "clock", "metrics",
                       "logrotate", "config"}
CORE_MAY_NOT_USE = [r"std::fs\b", r"std::thread\b", r"std::net\b", r"std::process\b",
                    r"std::env\b", r"\bMutex\b", r"\bRwLock\b", r"\bcrossbeam", r"\blog::",
                    r"Instant::now", r"SystemTime::now", r"Timestamp::now"]
breaches = []
for m, p in sorted(mods.items()):
    if m.split("::")[0] != CORE:
        continue
    for t in sorted(edges[m]):
        if t.split("::")[0] in CORE_MAY_NOT_IMPORT:
            breaches.append(f"pure core: {m} imports {t}")
    src = open(p).read()
    i = src.find("#[cfg(test)]\nmod tests")
    if i >= 0:
        src = src[:i]
    src = "\n".join(l for l in src.split("\n") if not l.lstrip().startswith("//"))
    for pat in CORE_MAY_NOT_USE:
        if re.search(pat, src):
            breaches.append(f"pure core: {m} uses {pat}")
for b in breaches:
    print(b)
sys.exit(1 if files or sccs(top) or breaches else 0)
