"""The package's shape: no import cycle between modules, and no core module imports the toy world.

The import graph is read from the source (``ast``), counting every import statement at any level
(module top, inside functions, ``TYPE_CHECKING`` blocks), so a cycle hidden in a function body
counts too. An edge ``a -> b`` means module ``a`` names module ``b`` (or a name inside it) in an
import; ``from . import x`` resolves to ``pkg.x`` when that is a module, else to ``pkg``.
"""
import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vlmprobe"
CORE = ("models", "data", "classify", "probe", "finetune", "wikiqa", "metrics", "engine", "runs", "specs",
        "options", "distributed", "cache", "errors", "jsonl", "study")


def module_name(path: Path) -> str:
    parts = ["vlmprobe", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=1)
def trees() -> dict[str, tuple[Path, list]]:
    """module -> (path, every node of its syntax tree), parsed once for all the tests here."""
    return {module_name(p): (p, list(ast.walk(ast.parse(p.read_text(encoding="utf-8")))))
            for p in PACKAGE.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    files = {m: p for m, (p, _) in trees().items()}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in trees()[mod][1]:
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:  # vlmprobe.models.base.LoadOptions -> vlmprobe.models.base
                    t = t.rpartition(".")[0]
                if t.startswith("vlmprobe") and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None (iterative three-colour DFS)."""
    colour = dict.fromkeys(graph, 0)
    for root in sorted(graph):
        if colour[root]:
            continue
        stack, path = [(root, iter(sorted(graph[root])))], [root]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return path[path.index(child):] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def _ancestors_closed(graph):
    """A package's ``__init__`` runs before any of its submodules: a package importing its own
    submodule is not a cycle of concern, so those edges are left out."""
    return {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}


def test_no_import_cycle():
    cycle = find_cycle(_ancestors_closed(import_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_core_modules_never_import_the_toy_world():
    graph = import_graph()
    core = [m for m in graph if m.count(".") and m.split(".")[1] in CORE]
    assert len(core) > 40
    offenders = {m: sorted(t for t in graph[m] if t == "vlmprobe.toy" or t.startswith("vlmprobe.toy."))
                 for m in core}
    assert not {m: t for m, t in offenders.items() if t}


def test_the_study_finds_the_toy_world_through_the_plugin():
    """``world: toy`` resolves through the registry the plugin fills (no core import of the toy)."""
    from vlmprobe.specs import find_world, world_names

    assert "toy" in world_names()
    from vlmprobe.toy.build import default_dir

    assert find_world("toy").directory(3) == default_dir(3)
    assert find_world("nope") is None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _calls(name: str) -> dict[str, int]:
    """Module -> how many times its source names attribute or function ``name`` (ast)."""
    out = {}
    for mod, (_, nodes) in trees().items():
        n = sum(1 for node in nodes
                if (isinstance(node, ast.Attribute) and node.attr == name)
                or (isinstance(node, ast.Name) and node.id == name)
                or (isinstance(node, ast.alias) and node.name == name))
        if n:
            out[mod] = n
    return out


def test_one_way_each_to_build_a_cached_directory_hash_a_file_and_name_imagenet_classes():
    """cache.build_dir_once is the only publisher of a temporary directory, cache.file_sha256 the
    only file hasher, data.imagenet_classes.imagenet_names the only reader of open_clip's names."""
    assert set(_calls("mkdtemp")) == {"vlmprobe.cache"}
    hashers = {mod for mod, (_, nodes) in trees().items()
               for node in nodes if isinstance(node, ast.FunctionDef) and "sha256" in node.name}
    assert hashers == {"vlmprobe.cache"}
    assert set(_calls("IMAGENET_CLASSNAMES")) == {"vlmprobe.data.imagenet_classes"}
    users = set(_calls("build_dir_once"))
    assert {"vlmprobe.testing.families", "vlmprobe.testing.real", "vlmprobe.testing.realtok"} <= users


def test_build_dir_once_reuses_current_and_rebuilds_outdated(tmp_path):
    from vlmprobe.cache import build_dir_once

    calls = []

    def write(version):
        def w(tmp):
            calls.append(version)
            (tmp / "f").write_text(str(version))
            return {"v": version}
        return w

    out = tmp_path / "d"
    build_dir_once(out, "m.json", write(1), current=lambda m: m["v"] == 1)
    build_dir_once(out, "m.json", write(1), current=lambda m: m["v"] == 1)
    assert calls == [1]
    build_dir_once(out, "m.json", write(2), current=lambda m: m["v"] == 2)  # outdated: rebuilt in place
    assert calls == [1, 2] and (out / "f").read_text() == "2"

    def broken(tmp):
        raise RuntimeError("boom")

    with __import__("pytest").raises(RuntimeError):
        build_dir_once(tmp_path / "e", "m.json", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no half-built directory left behind


def test_every_progress_bar_goes_through_the_one_switch():
    """Only vlmprobe.progress imports tqdm, so ``--no-progress`` reaches every bar."""
    users = {mod for mod, (_, nodes) in trees().items() for node in nodes
             if isinstance(node, (ast.Import, ast.ImportFrom))
             and any(n == "tqdm" or n.startswith("tqdm.") for n in
                     ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]))}
    assert users == {"vlmprobe.progress"}
