#!/usr/bin/env python3
"""check-layers.py SRCDIR BUILDDIR -- `make check-layers`: lib/'s files form one-way floors.

The floors are lib/'s subfolders, lowest first, as lib/FLOORS lists them (one name a line, `#`
starts a comment; a line `.` puts the files directly in lib/ on a floor of their own). A file is
one .c or .h under lib/ (in SRCDIR, or generated in BUILDDIR). Two kinds of arrow join files:
  include  `#include "x.h"` to the lib/ header it names: relative to the including file first,
           then to lib/, then by its basename if that is unique under lib/; a header found
           outside lib/ (include/kqcl.h, config.h, cl/...) draws no arrow;
  call     from the .c whose object leaves a global symbol undefined (or only weakly defined)
           to the .c whose object defines it, read with nm from BUILDDIR/lib/**/*.o (the
           libtool objects: `libkqcl_core_la-NAME.o` is lib/NAME.c; a copy under .libs/ is
           the same file).
It fails (exit 1) on an arrow from a lower floor to a higher one, on a cycle among modules (a
module is a .c with the .h of the same path stem: foo.c including foo.h is one module), on a
file that is on no floor, and on a FLOORS that names a missing folder or misses one. It cannot
check (exit 2) without FLOORS or without objects: an unbuilt tree must not pass.
NM in the environment names the nm to run (default nm); CHECK_LAYERS_VERBOSE=1 also prints every
arrow, for planning a move of files between floors.
"""
import os
import re
import shlex
import subprocess
import sys
from collections import defaultdict, deque

EXIT_VIOLATION = 1
EXIT_CANNOT_CHECK = 2
TOP = "."  # the pseudo-floor of the files directly in lib/
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
# automake names a per-target object TARGET-NAME.o; for lib/libkqcl_core.la TARGET is
# libkqcl_core_la (libkqcl_la for lib/libkqcl.la), so the prefix up to `_la-` goes.
OBJECT_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]+?_la-")
WEAK_TYPES = set("WVC")  # weak and common definitions: a strong one elsewhere wins at link time


class CannotCheck(Exception):
    """The tree cannot be checked (no FLOORS, not built, ...): exit 2, never a pass."""


# --- the floors -------------------------------------------------------------------------------

def read_floors(srcdir):
    """FLOORS' folder names, lowest floor first."""
    path = os.path.join(srcdir, "lib", "FLOORS")
    if not os.path.isfile(path):
        raise CannotCheck(f"{path} is missing: it lists lib/'s floors, lowest first")
    floors = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            name = line.split("#", 1)[0].strip().rstrip("/")
            if not name:
                continue
            if name != TOP and ("/" in name or name.startswith(".")):
                raise CannotCheck(f"{path}:{number}: '{name}' is not a folder directly in lib/")
            if name in floors:
                raise CannotCheck(f"{path}:{number}: '{name}' is listed twice")
            floors.append(name)
    if not floors:
        raise CannotCheck(f"{path} lists no floor")
    return floors


def floor_of(rel):
    """The floor a file's path (lib/...) puts it on: its first folder under lib/, or TOP."""
    parts = rel.split("/")
    return parts[1] if len(parts) > 2 else TOP


def check_floor_folders(srcdir, files, floors):
    """Problems with the floors themselves: folders FLOORS misses or names in vain, files on no floor."""
    problems = []
    libdir = os.path.join(srcdir, "lib")
    folders = {d for d in os.listdir(libdir)
               if os.path.isdir(os.path.join(libdir, d)) and not d.startswith(".")}
    folders |= {floor_of(rel) for rel in files} - {TOP}
    for d in sorted(folders - set(floors)):
        problems.append(f"folder lib/{d} is not listed in lib/FLOORS")
    for d in floors:
        if d != TOP and d not in folders:
            problems.append(f"lib/FLOORS names lib/{d}, which does not exist")
    if TOP not in floors:
        for rel in sorted(files):
            if floor_of(rel) == TOP:
                problems.append(f"file {rel} is on no floor (lib/FLOORS has no line '.')")
    return problems


# --- the files --------------------------------------------------------------------------------

def list_files(srcdir, builddir):
    """{lib/... path: path on disk} for every .c and .h, SRCDIR's first, then BUILDDIR's generated ones."""
    files = {}
    for root in (srcdir, builddir):
        libdir = os.path.join(root, "lib")
        for dirpath, dirnames, filenames in os.walk(libdir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # .libs, .deps
            for name in filenames:
                if name.endswith((".c", ".h")):
                    rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
                    files.setdefault(rel, os.path.join(dirpath, name))
    return files


def module_of(rel):
    """foo.c and foo.h of one folder are one module, named by their common stem."""
    return rel[:-2] if rel.endswith((".c", ".h")) else rel


# --- include arrows ---------------------------------------------------------------------------

def on_disk(srcdir, builddir, rel):
    return any(os.path.isfile(os.path.join(root, rel)) for root in (srcdir, builddir))


def resolve_include(rel, name, files, by_basename, srcdir, builddir):
    """The lib/ file `#include "name"` in rel means, None for one outside lib/; raises on ambiguity."""
    # As the compiler does, the including file's own folder first: a hit outside lib/ (e.g.
    # "../cl/kquant_layout.h") is not lib/'s business and must not fall through to a lib/ namesake.
    beside = os.path.normpath(os.path.join(os.path.dirname(rel), name)).replace(os.sep, "/")
    if beside in files:
        return beside
    if on_disk(srcdir, builddir, beside):
        return None
    under_lib = os.path.normpath(os.path.join("lib", name)).replace(os.sep, "/")
    if under_lib in files:
        return under_lib
    namesakes = by_basename.get(os.path.basename(name), [])
    if len(namesakes) > 1:
        raise ValueError(f'{rel}: #include "{name}" could be any of {", ".join(namesakes)}; '
                         "name its floor (\"floor/name.h\")")
    return namesakes[0] if namesakes else None


def include_arrows(files, srcdir, builddir):
    """({(from, to): [reason]}, [problem]) for every #include "..." of a lib/ file."""
    by_basename = defaultdict(list)
    for rel in sorted(files):
        by_basename[os.path.basename(rel)].append(rel)
    arrows, problems = defaultdict(list), []
    for rel, path in sorted(files.items()):
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                try:
                    target = resolve_include(rel, m.group(1), files, by_basename, srcdir, builddir)
                except ValueError as e:
                    problems.append(f"ambiguous include: {rel}:{number}: {e}")
                    continue
                if target and target != rel:
                    arrows[(rel, target)].append(f'include "{m.group(1)}" line {number}')
    return arrows, problems


# --- call arrows ------------------------------------------------------------------------------

def find_objects(builddir):
    """{lib/....c: object path}: one object per source, the copy outside .libs/ when there are two."""
    objects = {}
    for dirpath, dirnames, filenames in os.walk(os.path.join(builddir, "lib")):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".o"):
                continue
            path = os.path.join(dirpath, name)
            folder = os.path.relpath(dirpath, builddir).split(os.sep)
            in_libs = ".libs" in folder
            folder = [p for p in folder if p != ".libs"]
            source = "/".join(folder + [OBJECT_PREFIX_RE.sub("", name[:-2]) + ".c"])
            # Two targets can compile one source (libkqcl_la-x.o, libkqcl_core_la-x.o): their
            # globals are the same, so any one copy will do; prefer a non-.libs one.
            if source not in objects or (objects[source][1] and not in_libs):
                objects[source] = (path, in_libs)
    return {source: path for source, (path, _) in objects.items()}


def nm_symbols(nm, obj, *flags):
    """{symbol: type letter} of `nm -g -P FLAGS obj`."""
    try:
        out = subprocess.run([*nm, "-g", "-P", *flags, obj], check=True, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise CannotCheck(f"{' '.join(nm)} failed on {obj}: {getattr(e, 'stderr', '') or e}".strip())
    symbols = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].endswith(":"):  # skip a "file:" header line
            symbols[fields[0]] = fields[1]
    return symbols


def call_arrows(objects, nm):
    """{(from .c, to .c): {symbol}}: who needs a global that another object defines."""
    defined = {src: nm_symbols(nm, obj, "--defined-only") for src, obj in objects.items()}
    needed = {src: set(nm_symbols(nm, obj, "-u")) for src, obj in objects.items()}
    strong, weak = defaultdict(list), defaultdict(list)
    for src, symbols in defined.items():
        for sym, kind in symbols.items():
            (weak if kind in WEAK_TYPES else strong)[sym].append(src)
    arrows = defaultdict(set)
    for src in objects:
        # A weak definition of one's own loses to a strong one elsewhere: that is a use too.
        uses = needed[src] | {s for s, kind in defined[src].items() if kind in WEAK_TYPES and strong.get(s)}
        for sym in uses:
            for definer in strong.get(sym) or weak.get(sym, []):
                if definer != src:
                    arrows[(src, definer)].add(sym)
    return arrows


# --- cycles -----------------------------------------------------------------------------------

def strongly_connected(graph):
    """Tarjan's components of {node: set(node)}, iteratively (no recursion limit to meet)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def shortest_cycle(graph, component):
    """A shortest cycle through the component's first module: [m0, m1, ..., m0]."""
    start, members = component[0], set(component)
    parent, queue = {start: None}, deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & members):
            if child == start:
                path = [node]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return list(reversed(path)) + [start]
            if child not in parent:
                parent[child] = node
                queue.append(child)
    return [start]  # not reached for a true component of more than one module


# --- output -----------------------------------------------------------------------------------

def describe(a, b, includes, calls):
    """Why a -> b: its includes and (at most three of) its symbols."""
    reasons = list(includes.get((a, b), []))
    symbols = sorted(calls.get((a, b), []))
    if symbols:
        more = f" +{len(symbols) - 3} more" if len(symbols) > 3 else ""
        reasons.append("call " + ", ".join(symbols[:3]) + more)
    return "; ".join(reasons)


def short_names(rels, floor):
    """The floor's files relative to its folder, foo.c + foo.h written foo.[ch]."""
    prefix = "lib/" if floor == TOP else f"lib/{floor}/"
    stems = defaultdict(set)
    for rel in rels:
        stems[rel[len(prefix):-2]].add(rel[-1])
    return [stem + (".[ch]" if len(ext) == 2 else "." + ext.pop()) for stem, ext in sorted(stems.items())]


def print_floors(files, floors):
    """The table: a line (or a few) per floor, highest first, with its files."""
    print("check-layers: floors, highest first")
    width = max(len(f) for f in floors)
    for number in range(len(floors) - 1, -1, -1):
        floor = floors[number]
        mine = [rel for rel in files if floor_of(rel) == floor]
        line, lines = "", []
        for name in short_names(mine, floor):
            if line and len(line) + len(name) > 84:
                lines.append(line)
                line = ""
            line += (" " if line else "") + name
        lines.append(line)
        head = f"  {number} {floor:<{width}} {len(mine):>3} "
        print(head + lines[0])
        for rest in lines[1:]:
            print(" " * len(head) + rest)


def arrows_of(includes, calls):
    """Every (from, to) file pair that some include or call joins, sorted."""
    return sorted(set(includes) | set(calls))


def upward_arrows(arrows, floors, includes, calls):
    """One line for each arrow from a lower floor to a higher one."""
    level = {floor: number for number, floor in enumerate(floors)}
    lines = []
    for a, b in arrows:
        fa, fb = floor_of(a), floor_of(b)
        if fa in level and fb in level and level[fa] < level[fb]:  # files on no floor: reported apart
            lines.append(f"upward arrow: {a} -> {b} ({describe(a, b, includes, calls)})")
    return lines


def module_cycles(files, arrows, includes, calls):
    """For each component of more than one module: its lines (members, then one cycle, an arrow a line)."""
    graph = defaultdict(set)
    for rel in files:
        graph[module_of(rel)]
    for a, b in arrows:
        if module_of(a) != module_of(b):
            graph[module_of(a)].add(module_of(b))
    cycles = []
    for component in (c for c in strongly_connected(graph) if len(c) > 1):
        names = " ".join(m[len("lib/"):] for m in component)
        lines = [f"cycle among {len(component)} modules: {names}"]
        path = shortest_cycle(graph, component)
        # A step may leave a module by its other file (x.h in, x.c out): the path names modules.
        lines.append("    path: " + " -> ".join(m[len("lib/"):] for m in path))
        for ma, mb in zip(path, path[1:]):
            steps = [f"{a} -> {b} ({describe(a, b, includes, calls)})"
                     for a, b in arrows if module_of(a) == ma and module_of(b) == mb]
            lines.append("    " + steps[0] + (f" (+{plural(len(steps) - 1, 'more arrow')})" if len(steps) > 1 else ""))
        cycles.append(lines)
    return cycles


# --- the check --------------------------------------------------------------------------------

def plural(count, noun):
    return f"{count} {noun}" + ("" if count == 1 else "s")


def usable_objects(builddir, files):
    """find_objects' objects that have a source; notes on the rest and on sources without one."""
    objects = find_objects(builddir)
    if not objects:
        raise CannotCheck(f"no objects under {builddir}/lib: build the library first")
    for source in sorted(set(objects) - set(files)):
        print(f"check-layers: note: {objects.pop(source)} has no source {source}; ignored")
    unbuilt = sorted(rel for rel in files if rel.endswith(".c") and rel not in objects)
    if unbuilt:  # a partial build: say so, as their calls go unseen
        print(f"check-layers: note: no object for {', '.join(unbuilt)}: no call arrows from them")
    return objects


def check(srcdir, builddir, nm):
    """Prints the floors and every problem; returns the exit status."""
    floors = read_floors(srcdir)
    files = list_files(srcdir, builddir)
    objects = usable_objects(builddir, files)
    problems = check_floor_folders(srcdir, files, floors)
    includes, include_problems = include_arrows(files, srcdir, builddir)
    problems += include_problems
    calls = call_arrows(objects, nm)
    print_floors(files, floors)

    arrows = arrows_of(includes, calls)
    if os.environ.get("CHECK_LAYERS_VERBOSE") == "1":
        for a, b in arrows:
            print(f"arrow: {a} -> {b} ({describe(a, b, includes, calls)})")
    upward = upward_arrows(arrows, floors, includes, calls)
    cycles = module_cycles(files, arrows, includes, calls)
    for line in problems + upward + [line for cycle in cycles for line in cycle]:
        print(line)
    counts = (f"{plural(len(floors), 'floor')}, {plural(len(files), 'file')}, "
              f"{plural(len(includes), 'include arrow')}, {plural(len(calls), 'call arrow')}")
    if problems or upward or cycles:
        print(f"check-layers: FAILED ({counts}): {plural(len(upward), 'upward arrow')}, "
              f"{plural(len(cycles), 'cycle')}, {plural(len(problems), 'other problem')}")
        return EXIT_VIOLATION
    print(f"check-layers: {counts}: no cycle, no upward arrow")
    return 0


def main(argv):
    if len(argv) != 3:
        print("usage: check-layers.sh SRCDIR BUILDDIR", file=sys.stderr)
        return EXIT_CANNOT_CHECK
    srcdir, builddir = argv[1], argv[2]
    try:
        for d in (srcdir, builddir):
            if not os.path.isdir(os.path.join(d, "lib")):
                raise CannotCheck(f"{d}/lib is not a folder")
        # NM may hold options too: libtool's Makefile has NM = "/usr/bin/nm -B" (-P wins over -B).
        return check(srcdir, builddir, shlex.split(os.environ.get("NM") or "nm"))
    except CannotCheck as e:
        print(f"check-layers: cannot check: {e}", file=sys.stderr)
        return EXIT_CANNOT_CHECK


if __name__ == "__main__":
    sys.exit(main(sys.argv))
