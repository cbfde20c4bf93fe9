"""Keep the README honest: every command, option and route the project offers is documented there.

(Every setting is checked in test_config.py; every /api/v1 parameter against the OpenAPI document in test_api.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from geoservice.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _leaf_commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    leaves = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            leaves.extend(_leaf_commands(command, path))
        else:
            leaves.append((path, command))
    return leaves


COMMANDS = _leaf_commands(main, "geoservice")


def _readme_row(command_path: str) -> str:
    """The README's command-table row of a command (its first cell starts with the command)."""
    rows = [line for line in README.splitlines() if line.startswith(f"| `{command_path}")]
    assert rows, f"README's command table has no row for `{command_path}`"
    return rows[0]


def test_the_command_walk_finds_every_command():
    names = {path for path, _ in COMMANDS}
    assert {"geoservice db up", "geoservice demo load", "geoservice import", "geoservice serve"} <= names


@pytest.mark.parametrize("command_path,command", COMMANDS, ids=[path for path, _ in COMMANDS])
def test_every_command_and_option_is_in_the_readme(command_path, command):
    row = _readme_row(command_path)
    for param in command.params:
        if isinstance(param, click.Option):
            longs = [opt for opt in param.opts + param.secondary_opts if opt.startswith("--") and opt != "--help"]
            assert any(opt in row for opt in longs), f"{command_path}: option {longs} not in the README row"
        else:
            assert param.name.upper() in row, f"{command_path}: argument {param.name.upper()} not in the README row"


def _route_pattern(rule: str) -> re.Pattern:
    """A rule as the README writes it: ``<collection_id>`` is any ``{…}``, after a backtick, ``GET `` or the URL
    of the local server, and followed by the end of the path (query, bracket, backtick, space or table cell)."""
    path = rule.rstrip("/") or "/"
    parts = re.split(r"<[^>]+>", path)
    body = r"\{[^}]*\}".join(re.escape(part) for part in parts)
    return re.compile(rf"(?:`|`GET |127\.0\.0\.1:5000){body}(?=[?\[` |])")


def test_every_route_is_in_the_readme(app):
    missing = [rule.rule for rule in app.url_map.iter_rules()
               if rule.endpoint != "static" and not _route_pattern(rule.rule).search(README)]
    assert not missing, f"routes the README does not mention: {missing}"
