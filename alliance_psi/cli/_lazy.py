"""Command groups whose subcommands are imported only when used, so a command starts quickly.

Each ``alliance-psi`` process runs one command, yet importing every command's module would load
what all of them need (SQLAlchemy, the identifier normalizers, the report renderers, gRPC...).
A ``LazyGroup`` names its subcommands as ``"module:attribute"`` and imports a module only when
click asks for that command: to run it, to show its ``--help``, or to list the group's commands
with their short help. The modules keep attaching their commands with ``@group.command(...)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

__all__ = ["LazyGroup"]


class LazyGroup(click.Group):
    """A ``click.Group`` with ``lazy_commands``: ``{name: "package.module:attribute"}``."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, str] = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self.add_command(self.load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def load(self, cmd_name: str) -> click.Command:
        """Import the module of the lazy command ``cmd_name`` and return the command."""
        module_name, _, attribute = self.lazy_commands[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_commands[cmd_name]} is not a click command")
        return command
