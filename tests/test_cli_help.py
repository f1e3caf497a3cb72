"""Every command's ``--help`` ends with one example line, and that example parses: its command exists and click
accepts its options (nothing runs)."""

from __future__ import annotations

import shlex

import click
import pytest
from click.testing import CliRunner

from yamlllm_export.cli import main

COMMANDS = sorted(main.commands)


def _last_line(args: list[str]) -> str:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-2].strip() == "Example:", result.output
    return lines[-1].strip()


@pytest.mark.parametrize("name", COMMANDS)
def test_help_ends_with_an_example_that_parses(name):
    words = shlex.split(_last_line([name]).split(" > ")[0])  # a shell redirection is not the command's
    assert words[:2] == ["yamlllm-export", name]
    command = main.commands[name]
    with command.make_context(name, words[2:]) as ctx:  # raises click.UsageError on an unknown option
        assert ctx.command is command


def test_the_group_help_ends_with_an_example():
    words = shlex.split(_last_line([]))
    assert words[0] == "yamlllm-export" and words[1] in main.commands


def test_a_wrong_example_would_fail():
    with pytest.raises(click.UsageError):
        main.commands["build"].make_context("build", ["models/tiny-llama.yaml", "--no-such-option"])
