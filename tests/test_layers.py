"""Layers point inward (docs/design.md, Layers) and the public names stay put."""

from __future__ import annotations

import ast
from pathlib import Path

import eventsrc
import eventsrc.events

PACKAGE = Path(eventsrc.__file__).parent

# Every package may import these leaves; they import nothing of ours.
LEAVES = {"eventsrc.errors", "eventsrc.ports"}
ALLOWED = {
    "eventsrc.events": {"eventsrc.events"},
    "eventsrc.projections": {"eventsrc.events", "eventsrc.projections"},
    "eventsrc.commands": {"eventsrc.events", "eventsrc.projections", "eventsrc.commands"},
}
IO_MODULES = {"nats", "asyncio.subprocess", "subprocess", "socket", "os"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_inner_layers_import_only_inward() -> None:
    for layer, allowed in ALLOWED.items():
        folder = PACKAGE / layer.split(".")[1]
        for path in folder.rglob("*.py"):
            for name in imports_of(path):
                top = name.split(".")[0]
                if top == "eventsrc":
                    owner = ".".join(name.split(".")[:2])
                    assert owner in allowed | LEAVES, f"{path}: imports {name}"
                assert top not in IO_MODULES and name not in IO_MODULES, (
                    f"{path}: {layer} must not do I/O but imports {name}"
                )


def test_errors_module_is_a_leaf() -> None:
    assert not any(name.startswith("eventsrc") for name in imports_of(PACKAGE / "errors.py"))


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

    catalog = (PACKAGE.parent / "docs" / "events.md").read_text(encoding="utf-8")
    missing = [name for name in EVENT_CLASSES if f"`{name}`" not in catalog]
    assert not missing, f"docs/events.md lacks {missing}"
