#!/usr/bin/env python3
"""Import cycles between the files of each crate of the workspace
(run by scripts/check-cycles.sh, from the workspace root).

The graph, for each target of each workspace package (`cargo metadata`:
the library, every binary, test, bench and example, each a crate):
* a node per file of the target's module tree, found by following the
  `mod name;` declarations from the target's root file;
* an edge A -> B when file A names something in module B by a path of the
  crate: from `crate::`, `super::`, `self::` or the name of a module A
  declares, in a `use` declaration or anywhere else in the code (an
  expression, a type, an attribute), resolved to the deepest module along
  it that is a file. Inline `mod x { ... }` blocks count as part of their
  file, so `super::` inside `mod tests` is the file itself.
* A name a module only re-exports (`pub use a::X;`) is followed to the
  module it comes from: a facade is not where the name lives.
* `mod` declarations are ownership, not edges; edges to the file itself
  are dropped; comments and string literals are ignored.

A cycle is a strongly connected set of two or more files. Each is printed
with the first line of each of its edges; the exit code is 1 if there is
any. `--self-test` checks the checker on small crates with a known answer.
Standard library only.
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_code(text):
    """The source with comments and string/char literals blanked (same
    length, newlines kept), so that positions and line numbers still hold."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif re.match(r'b?r(#*)"', text[i:i + 40]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            blank(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), not a lifetime ('a).
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                blank(i, i + m.end())
                i += m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def expand_use_tree(tree):
    """`a::{b, c::{d, e as f}, self}` -> ['a::b', 'a::c::d', 'a::c::e', 'a']."""
    tree = re.sub(r"\s+as\s+" + IDENT, "", tree)
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        return [tree]
    head, rest = tree.split("{", 1)
    inner = rest[: rest.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    paths = []
    for part in filter(None, parts):
        for sub in expand_use_tree(part):
            if sub == "self":
                paths.append(head.rstrip(":"))
            else:
                paths.append(head + sub)
    return paths


class Target:
    """One crate: its root file and module tree."""

    def __init__(self, package, name, root):
        self.package, self.name, self.root = package, name, root
        self.files = {}  # module path (tuple) -> file
        self.collect(root, ())

    def collect(self, file, modpath):
        self.files[modpath] = file
        code = strip_code(file.read_text())
        if file.name in ("lib.rs", "main.rs", "mod.rs") or file == self.root:
            base = file.parent
        else:
            base = file.parent / file.stem
        for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*;", code):
            name = m.group(1)
            for child in (base / f"{name}.rs", base / name / "mod.rs"):
                if child.exists():
                    self.collect(child, modpath + (name,))
                    break

    def children(self, modpath):
        """The names of the modules declared in `modpath`."""
        n = len(modpath)
        return {m[n] for m in self.files if len(m) == n + 1 and m[:n] == modpath}


def inline_mods(code):
    """Spans of inline `mod x { ... }` blocks: (start, end, name)."""
    spans = []
    for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += code[j] == "{"
            depth -= code[j] == "}"
            j += 1
        spans.append((m.start(), j, m.group(1)))
    return spans


def paths_in(code):
    """(position, path) of every path in `code`: each leaf of each `use`
    declaration, and every `a::b` path elsewhere; with whether it was
    re-exported (`pub use`)."""
    found = []
    for m in re.finditer(r"(\bpub(?:\([^)]*\))?\s+)?\buse\s+([^;]+);", code):
        for p in expand_use_tree(m.group(2)):
            found.append((m.start(), p, bool(m.group(1))))
    rest = re.sub(r"\buse\s+[^;]+;", lambda m: " " * len(m.group(0)), code)
    for m in re.finditer(r"(?<![A-Za-z0-9_:$])" + IDENT + r"(?:::" + IDENT + r")+", rest):
        found.append((m.start(), m.group(0), False))
    return found


class Resolver:
    """Paths of one target to the module (file) they lead into."""

    def __init__(self, target):
        self.target = target
        self.code = {f: strip_code(f.read_text()) for f in target.files.values()}
        # Module -> {name: full path of what it re-exports under that name}.
        self.reexports = {}
        for modpath, file in target.files.items():
            table = {}
            for _pos, path, public in paths_in(self.code[file]):
                if public:
                    full = self.absolute(list(modpath), path)
                    if full:
                        table[full[-1]] = full
            self.reexports[modpath] = table

    def absolute(self, here, path):
        """The path from the crate root, or None if it leaves the crate (or
        names something local to the file: a type, a variant, a function)."""
        segs = [s for s in path.split("::") if s]
        if not segs:
            return None
        if segs[0] == "crate":
            return segs[1:]
        if segs[0] in ("super", "self"):
            cur = list(here)
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    cur = cur[:-1]
                segs = segs[1:]
            return cur + segs
        if segs[0] in self.target.children(tuple(here)):
            return list(here) + segs
        return None

    def module_of(self, full):
        """The deepest module along `full` that is a file, following
        re-exports (a facade is not where a name comes from)."""
        modules = self.target.files
        for _ in range(16):
            k = next(k for k in range(len(full), -1, -1) if tuple(full[:k]) in modules)
            module = tuple(full[:k])
            if k < len(full) and full[k] in self.reexports.get(module, {}):
                target = self.reexports[module][full[k]]
                if target != full[: k + 1]:
                    full = target + full[k + 1:]
                    continue
            return module
        return module


def edges_of(target):
    """(from file, to file, line) for every path into another file."""
    resolver = Resolver(target)
    found = []
    for modpath, file in target.files.items():
        code = resolver.code[file]
        spans = inline_mods(code)
        for pos, path, _public in paths_in(code):
            here = list(modpath) + [name for (a, b, name) in spans if a <= pos < b]
            full = resolver.absolute(here, path)
            if full is None:
                continue
            into = target.files[resolver.module_of(full)]
            if into != file:
                found.append((file, into, code.count("\n", 0, pos) + 1))
    return found


def cycles(nodes, edges):
    """Strongly connected components of two or more nodes (Tarjan)."""
    succ = {n: set() for n in nodes}
    for a, b, _ in edges:
        succ[a].add(b)
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(succ[v]):
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

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def workspace_targets():
    """Every target of every workspace package, from `cargo metadata`."""
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    targets = []
    for package in meta["packages"]:
        for t in package["targets"]:
            kinds = [k for k in t["kind"] if k != "custom-build"]
            if kinds:
                root = Path(t["src_path"]).relative_to(Path.cwd())
                targets.append(Target(package["name"], f"{kinds[0]} {t['name']}", root))
    return targets


def report(targets):
    """Print every cycle of `targets`; whether there was none."""
    clean = True
    for target in targets:
        edges = edges_of(target)
        for comp in cycles(list(target.files.values()), edges):
            clean = False
            members = set(comp)
            print(f"cycle in {target.package} ({target.name}): {len(comp)} files import each other")
            for f in comp:
                print(f"  {f}")
            seen = set()
            for a, b, line in sorted(edges, key=lambda e: (str(e[0]), e[2])):
                if a in members and b in members and (a, b) not in seen:
                    seen.add((a, b))
                    print(f"    {a}:{line} -> {b}")
    return clean


def self_test():
    """Crates with a known answer: the check must find exactly their cycles."""
    cases = {
        # x uses y's type; y names x's type inline: one cycle.
        "use_and_inline_path": (
            {
                "src/lib.rs": "mod x;\nmod y;\n",
                "src/x.rs": "use crate::y::Y;\npub struct X(Y);\n",
                "src/y.rs": "pub struct Y;\npub fn f() -> crate::x::X { todo!() }\n",
            },
            1,
        ),
        # A parent that registers a child's handler, and the child calling
        # back into the parent: one cycle.
        "parent_and_child": (
            {
                "src/lib.rs": "mod r;\n",
                "src/r/mod.rs": "mod a;\npub fn helper() {}\nfn table() { a::handler(); }\n",
                "src/r/a.rs": "pub fn handler() { super::helper(); }\n",
            },
            1,
        ),
        # Through the root's re-export, super:: in a test module, comments
        # and strings: no cycle.
        "no_cycle": (
            {
                "src/lib.rs": "mod x;\nmod y;\npub use x::X;\npub use y::g;\n",
                "src/x.rs": (
                    "// crate::y::g()\npub struct X;\nconst S: &str = \"crate::y::g\";\n"
                    "#[cfg(test)]\nmod tests {\n    use super::*;\n}\n"
                ),
                "src/y.rs": "use crate::X;\npub fn g(_: X) {}\n",
            },
            0,
        ),
    }
    failed = []
    for name, (files, expected) in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            for rel, text in files.items():
                path = Path(tmp) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            target = Target(name, "lib", Path(tmp) / "src/lib.rs")
            got = len(cycles(list(target.files.values()), edges_of(target)))
            if got != expected:
                failed.append(f"{name}: {got} cycles, expected {expected}")
    for f in failed:
        print(f"import_cycles self-test FAILED: {f}", file=sys.stderr)
    return not failed


def main(argv):
    if argv == ["--self-test"]:
        return 0 if self_test() else 1
    if argv:
        print("usage: import_cycles.py [--self-test]   (from the workspace root)", file=sys.stderr)
        return 2
    targets = workspace_targets()
    if not report(targets):
        return 1
    packages = {t.package for t in targets}
    print(f"no import cycle between files ({len(targets)} crates of {len(packages)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
