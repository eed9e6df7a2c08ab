"""Imports point inward (docs/design.md, Layers), for every package of ours.

Each module belongs to a unit (``eventsrc/store/feed.py`` to ``eventsrc.store``,
``eventsrc/writer.py`` to ``eventsrc.writer``, anything under ``replay_tools/`` to
``replay_tools``). Units sit in rings; a unit may import its own ring and the rings
inside it, never outward. A few rules sharpen that: who alone speaks NATS, what the pure
core may not touch, and which services must not know each other. Relative imports are
resolved like absolute ones. A failure names the file, the import and the rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import eventsrc.events

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("eventsrc", "replay_tools")

RINGS: tuple[tuple[str, frozenset[str]], ...] = (
    ("leaves", frozenset({"eventsrc.errors", "eventsrc.events", "eventsrc.ports"})),
    ("pure core", frozenset({"eventsrc.projections", "eventsrc.commands"})),
    (
        "adapters",
        frozenset(
            {
                "eventsrc.store",
                "eventsrc.writer",
                "eventsrc.registry",
                "eventsrc.history",
                "eventsrc.lineage",
                "eventsrc.runner",
                "eventsrc.runtime",
                "eventsrc.progress",  # progress bars on a terminal
                "eventsrc.config",
                "eventsrc.secure",
                "eventsrc.api_client",
                "eventsrc.metrics",  # Prometheus collectors and exposition
                "eventsrc.dashboard",  # the HTTP side: read-only views over a projection
            }
        ),
    ),
    ("services", frozenset({"eventsrc.coordinator", "eventsrc.node"})),
)
"""Every unit not named here is an application or facade: the outermost ring."""
OUTER = "applications"

# Inside a ring, the few orders that hold: (importer, importee) pairs that are refused.
REFUSED_PEERS: dict[tuple[str, str], str] = {
    ("eventsrc.errors", "eventsrc.events"): "errors is the leaf every layer may import",
    ("eventsrc.errors", "eventsrc.ports"): "errors is the leaf every layer may import",
    ("eventsrc.events", "eventsrc.ports"): "events are the centre; ports are built on them",
    ("eventsrc.projections", "eventsrc.commands"): "commands decide on projections, not back",
    ("eventsrc.coordinator", "eventsrc.node"): (
        "the coordinator runs no node code; the embedded node is composed in"
        " eventsrc/coordinator/__main__.py"
    ),
    ("eventsrc.node", "eventsrc.coordinator"): "a node knows the coordinator only by its API",
}
# The only imports allowed against the rules above, each with its reason.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("eventsrc/coordinator/__main__.py", "eventsrc.node"): (
        "the composition root: the embedded cluster of one runs a local node"
    ),
    ("eventsrc/node/messaging.py", "eventsrc.client"): (
        "handlers are handed the public Cluster to submit sub-tasks"
    ),
    ("eventsrc/node/discovery.py", "eventsrc.skills"): (
        "the older public name eventsrc.node.discovery.SkillDiscovery, resolved lazily"
    ),
}

NATS_ONLY_IN = "eventsrc.store"
NO_IO = frozenset({"nats", "asyncio", "aiorwlock", "subprocess", "socket", "os", "gc"})
NO_IO_RINGS = ("leaves", "pure core")


@dataclass(frozen=True, slots=True)
class Import:
    path: Path
    line: int
    name: str  # fully resolved dotted name


def unit_of_module(name: str) -> str | None:
    """The unit a dotted module name belongs to, or None when it is not ours."""
    parts = name.split(".")
    if parts[0] == "replay_tools":
        return "replay_tools"
    if parts[0] != "eventsrc":
        return None
    return ".".join(parts[:2])


def unit_of_path(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    unit = unit_of_module(".".join(parts))
    assert unit is not None
    return unit


def ring_of(unit: str) -> int:
    for index, (_, units) in enumerate(RINGS):
        if unit in units:
            return index
    return len(RINGS)


def ring_name(index: int) -> str:
    return RINGS[index][0] if index < len(RINGS) else OUTER


def imports_in(path: Path, root: Path = ROOT) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(root).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from eventsrc import client` imports the module eventsrc.client
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                is_module = unit_of_module(module) is not None and (
                    (root / Path(*candidate.split(".")) / "__init__.py").exists()
                    or (root / Path(*candidate.split("."))).with_suffix(".py").exists()
                )
                yield Import(path, node.lineno, candidate if is_module else module)


def our_modules() -> list[Path]:
    return sorted(p for top in SCANNED for p in (ROOT / top).rglob("*.py"))


def violations() -> list[str]:
    found: list[str] = []
    for path in our_modules():
        rel = path.relative_to(ROOT).as_posix()
        unit = unit_of_path(path)
        ring = ring_of(unit)
        for imp in imports_in(path):
            where = f"{rel}:{imp.line}: imports {imp.name}"
            top = imp.name.split(".")[0]
            if top == "nats" and unit != NATS_ONLY_IN:
                found.append(f"{where}: only {NATS_ONLY_IN} speaks NATS; use a store port")
            if ring_name(ring) in NO_IO_RINGS and (
                top in NO_IO or imp.name in NO_IO or imp.name == "asyncio.subprocess"
            ):
                found.append(f"{where}: the {ring_name(ring)} does no I/O and no waiting")
            target = unit_of_module(imp.name)
            if target is None or target == unit:
                continue
            if target == "eventsrc" and imp.name == "eventsrc":
                # `import eventsrc` for __version__: the root is loaded before any of
                # its modules, so it adds no dependency. Anything else from the root
                # facade is an outward import.
                continue
            if (rel, target) in EXCEPTIONS:
                continue
            target_ring = ring_of(target)
            if target_ring > ring:
                found.append(
                    f"{where}: {unit} ({ring_name(ring)}) may not import {target}"
                    f" ({ring_name(target_ring)}): imports point inward"
                )
            reason = REFUSED_PEERS.get((unit, target))
            if reason:
                found.append(f"{where}: {unit} may not import {target}: {reason}")
    return list(dict.fromkeys(found))  # `from x import a, b` is one import


def test_imports_point_inward() -> None:
    broken = violations()
    assert not broken, "layer rules broken:\n" + "\n".join(broken)


def test_every_exception_is_still_needed() -> None:
    # An exception nobody uses any more is a hole in the rules: remove it.
    used = {
        (imp.path.relative_to(ROOT).as_posix(), unit_of_module(imp.name))
        for path in our_modules()
        for imp in imports_in(path)
    }
    assert set(EXCEPTIONS) <= used, sorted(set(EXCEPTIONS) - used)


def test_every_unit_is_placed_in_a_ring_or_is_an_application() -> None:
    # A new top-level module lands in the outer ring by default; this test lists them
    # so that placing one there is a decision, not an accident.
    outer = sorted({unit_of_path(p) for p in our_modules()} - set().union(*(u for _, u in RINGS)))
    assert outer == [
        "eventsrc",
        "eventsrc.cli",
        "eventsrc.cli_batch",
        "eventsrc.cli_text",
        "eventsrc.client",
        "eventsrc.communication",
        "eventsrc.mcp",
        "eventsrc.openclaw_install",
        "eventsrc.openclaw_toolchain",
        "eventsrc.skills",
        "replay_tools",
    ], outer


def test_the_checker_resolves_relative_imports(tmp_path: Path) -> None:
    # The checker itself: relative imports resolve to the modules they name.
    (tmp_path / "eventsrc" / "store").mkdir(parents=True)
    (tmp_path / "eventsrc" / "projections").mkdir()
    (tmp_path / "eventsrc" / "store" / "feed.py").write_text("")
    sample = tmp_path / "eventsrc" / "projections" / "apply.py"
    sample.write_text("from ..store import feed\nfrom .state import X\nfrom . import y\n")
    names = [imp.name for imp in imports_in(sample, tmp_path)]
    assert names == ["eventsrc.store.feed", "eventsrc.projections.state", "eventsrc.projections"]
    assert unit_of_module(names[0]) == "eventsrc.store"
    assert ring_of("eventsrc.projections") < ring_of("eventsrc.store")


def test_errors_module_is_a_leaf() -> None:
    assert not any(
        name.startswith("eventsrc")
        for name in (imp.name for imp in imports_in(ROOT / "eventsrc" / "errors.py"))
    )


def test_public_event_names_are_pinned() -> None:
    expected = {
        "Event",
        "EventBase",
        "SkillMetadata",
        "SkillCategory",
        "TaskSpec",
        "decode",
        "encode",
        "validate_token",
        "new_event_id",
        "canonical_hash",
    }
    assert expected <= set(eventsrc.events.__all__)


def test_every_event_type_is_documented() -> None:
    from eventsrc.events import EVENT_CLASSES

    catalog = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    missing = [name for name in EVENT_CLASSES if f"`{name}`" not in catalog]
    assert not missing, f"docs/events.md lacks {missing}"
