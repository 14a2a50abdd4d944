"""Spec-prefix tables: ``prefix -> resolver`` for model specs and dataset specs.

A spec string such as ``openclip:ViT-B-32@openai``, ``hf:llava-hf/llava-1.5-7b-hf`` or
``toy:digits:test`` is resolved by the entry whose prefix is the longest one the spec starts
with. An entry is either

- a **loader**: ``resolve(spec, ...) -> object`` (models: ``(spec, LoadOptions) -> VisionModel``;
  datasets: ``(spec, split) -> ImageDataset``), or
- an **alias** (models only): ``resolve(spec) -> another spec`` (``toy:vlm`` -> ``hf:<dir>``); the
  model is loaded from the other spec and keeps the spec the user typed.

Core modules register their built-in prefixes when they are imported. Anything else (the
miniature world, a user's own formats) registers through the ``vlmprobe.plugins`` entry-point
group: each entry point names a callable taking no arguments that calls ``register`` on
``MODEL_SPECS`` / ``DATASET_SPECS``. Plugins are loaded once, the first time a table is searched,
so core modules never import them. A plugin may also register a ``World`` (``register_world``)
that a study file builds first with ``world: NAME``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

PLUGIN_GROUP = "vlmprobe.plugins"
_plugins_loaded = False


@dataclass(frozen=True)
class SpecEntry:
    prefix: str
    resolve: Callable
    help: str = ""
    alias: bool = False
    names: tuple = ()  # a closed namespace: every valid spec under the prefix (checked up front); () = open


class SpecTable:
    """The prefixes of one kind of spec (``"model"`` or ``"dataset"``)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, SpecEntry] = {}

    def register(self, prefix: str, resolve: Callable, help: str = "", alias: bool = False,
                 names: tuple = ()) -> None:
        """Add (or replace) the resolver of ``prefix`` (which must end with ``:``); ``names``:
        the complete list of specs it accepts, when it is a closed set (a study file is checked
        against it before anything runs)."""
        if not prefix.endswith(":"):
            raise ValueError(f"{self.kind} spec prefix {prefix!r} must end with ':'")
        self._entries[prefix] = SpecEntry(prefix, resolve, help, alias, tuple(names))

    def find(self, spec: str) -> SpecEntry | None:
        """The entry with the longest prefix of ``spec``, or None."""
        load_plugins()
        matches = [e for p, e in self._entries.items() if spec.startswith(p)]
        return max(matches, key=lambda e: len(e.prefix)) if matches else None

    def prefixes(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[SpecEntry]:
        load_plugins()
        return [self._entries[p] for p in sorted(self._entries)]


MODEL_SPECS = SpecTable("model")
DATASET_SPECS = SpecTable("dataset")
# CPE inputs: ``resolve(spec) -> list[str]`` of ``{}`` templates / ``-> {class: [description]}``
TEMPLATE_SPECS = SpecTable("template")
DESCRIPTION_SPECS = SpecTable("description")
# Caption sets for ``vlmprobe retrieval``: ``resolve(spec, limit=, seed=) -> CaptionDataset``.
CAPTION_SPECS = SpecTable("captions")


@dataclass(frozen=True)
class World:
    """A world a study file may ask for (``world: NAME``): built before the study's runs, its
    directory substituted for ``${NAME}`` in the study file.

    ``directory(seed) -> Path`` where it lives; ``build(seed, progress) -> dict`` builds or reuses it
    (``{"dir", "key", "reused", ...}``); ``existing(seed) -> dict | None`` the built one, if any."""
    name: str
    directory: Callable
    build: Callable
    existing: Callable
    help: str = ""


_WORLDS: dict[str, World] = {}


def register_world(world: World) -> None:
    """Add (or replace) a world under ``world.name`` (plugins call this, as they register specs)."""
    _WORLDS[world.name] = world


def find_world(name: str) -> World | None:
    """The registered world called ``name``, or None."""
    load_plugins()
    return _WORLDS.get(name)


def world_names() -> list[str]:
    load_plugins()
    return sorted(_WORLDS)


def load_plugins() -> None:
    """Call every ``vlmprobe.plugins`` entry point once (they register their prefixes)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        ep.load()()
