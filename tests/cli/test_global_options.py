"""Every command of ``eventsrc`` and ``replay_tools`` takes the global options before or
after its name (table-driven over the parsers' subcommands)."""

from __future__ import annotations

import argparse

import pytest

from eventsrc import cli
from replay_tools import __main__ as replay_cli

# The least each command needs besides the global options.
EVENTSRC_COMMANDS: dict[str, list[str] | None] = {
    "submit": ["--skill", "python"],
    "get": ["t-1"],
    "cancel": ["t-1"],
    "drain": ["n-1"],
    "undrain": ["n-1"],
    "limit": None,
    "limit set": ["openai", "--max", "2"],
    "limit list": [],
    "limit remove": ["openai"],
    "nodes": [],
    "skills": [],
    "status": [],
    "tasks": [],
    "schedule": None,
    "schedule add": ["s-1", "--every", "30s", "--skill", "python"],
    "schedule list": [],
    "schedule next": ["s-1"],
    "schedule pause": ["s-1"],
    "schedule resume": ["s-1"],
    "schedule remove": ["s-1"],
    "secure": None,
    "secure init": ["/tmp/x"],
    "secure add-node": ["/tmp/x", "n-1"],
    "server": ["--data-dir", "/tmp/x"],
    "mcp": [],
    "dashboard": ["--http", "127.0.0.1:0"],
    "openclaw": None,
    "openclaw install": [],
}
REPLAY_COMMANDS: dict[str, list[str] | None] = {
    "rebuild": [],
    "audit": ["task", "t-1"],
    "verify": [],
    "what-if": ["--stale-after", "5"],
    "export": ["--out", "x.jsonl"],
    "import": ["--in", "x.jsonl"],
    "schema": [],
    "stats": [],
}


def leaf_commands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, bool]:
    """Every command path of ``parser`` -> whether it has commands of its own."""
    found: dict[str, bool] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                path = f"{prefix}{name}"
                below = leaf_commands(command, f"{path} ")
                found[path] = bool(below)
                found.update(below)
    return found


@pytest.mark.parametrize(
    ("parser", "table"),
    [(cli.build_parser(), EVENTSRC_COMMANDS), (replay_cli.build_parser(), REPLAY_COMMANDS)],
    ids=["eventsrc", "replay_tools"],
)
def test_the_table_names_every_command(
    parser: argparse.ArgumentParser, table: dict[str, list[str] | None]
) -> None:
    commands = leaf_commands(parser)
    assert set(commands) == set(table)
    # A row of None is a command with commands of its own: its leaves are the rows.
    assert {path for path, nested in commands.items() if nested} == {
        path for path, args in table.items() if args is None
    }


def cases() -> list[tuple[str, str, list[str], list[str]]]:
    """(program, command, its arguments, the global options to put around them)."""
    options = ["--nats-url", "nats://example:4222", "--creds", "c.creds"]
    rows = []
    for path, args in EVENTSRC_COMMANDS.items():
        if args is not None:
            rows.append(("eventsrc", path, args, [*options, "--json"]))
    for path, args in REPLAY_COMMANDS.items():
        if args is not None:
            rows.append(("replay_tools", path, args, options))
    return rows


def parse(program: str, argv: list[str]) -> argparse.Namespace:
    parser = cli.build_parser() if program == "eventsrc" else replay_cli.build_parser()
    return parser.parse_args(argv)


@pytest.mark.parametrize(("program", "command", "args", "options"), cases())
def test_global_options_go_before_or_after_the_command(
    program: str, command: str, args: list[str], options: list[str]
) -> None:
    words = command.split()
    for argv in ([*options, *words, *args], [*words, *args, *options], [*words, *options, *args]):
        parsed = parse(program, argv)
        assert parsed.nats_url == "nats://example:4222", argv
        assert parsed.creds == "c.creds", argv
        if "--json" in options:
            assert parsed.json is True, argv


@pytest.mark.parametrize(("program", "command", "args", "options"), cases())
def test_without_global_options_the_defaults_hold(
    program: str, command: str, args: list[str], options: list[str]
) -> None:
    parsed = parse(program, [*command.split(), *args])
    assert parsed.nats_url is None and parsed.creds is None
    if program == "eventsrc":
        assert parsed.json is False


def test_a_value_after_the_command_wins_over_one_before() -> None:
    parsed = parse("eventsrc", ["--nats-url", "nats://a:1", "nodes", "--nats-url", "nats://b:2"])
    assert parsed.nats_url == "nats://b:2"
    # One given before only stays: the command's own has no default to overwrite it.
    assert parse("eventsrc", ["--json", "nodes"]).json is True


def helps(parser: argparse.ArgumentParser) -> list[str]:
    """The --help text of ``parser`` and of every command below it."""
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                texts += helps(command)
    return texts


@pytest.mark.parametrize("parser", [cli.build_parser(), replay_cli.build_parser()])
def test_help_texts_carry_no_markup(parser: argparse.ArgumentParser) -> None:
    texts = helps(parser)
    assert len(texts) > 5
    for text in texts:
        assert "`" not in text, text
