"""The ``vcall`` command line as a user meets it (issue 15): --version, every command in the
top-level help, help text on every option, "invalid choice" for a mistyped command, and bad
values as a one-line usage error (exit 2), never a traceback. Real processes for what the user
sees; the parsers walked in-process for the help texts."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import vcall
from vcall.cli import SUBCOMMANDS, _defaults_to_gui, _load
from vcall.config import count_arg, delay_arg, port_arg, seconds_arg


def vcall_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vcall", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_version() -> None:
    done = vcall_run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"vcall {vcall.__version__}"


def test_top_level_help_lists_every_command() -> None:
    done = vcall_run("--help")
    assert done.returncode == 0
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("    ")}
    assert set(SUBCOMMANDS) <= listed, listed
    assert "--version" in done.stdout and "vcall-discovery" in done.stdout


@pytest.mark.parametrize("word", ["stats", "call"])
def test_a_mistyped_command_is_an_invalid_choice(word: str) -> None:
    done = vcall_run(word)
    assert done.returncode == 2
    assert "invalid choice" in done.stderr and "Traceback" not in done.stderr


def test_options_without_a_command_still_open_the_client() -> None:
    assert _defaults_to_gui([])
    assert _defaults_to_gui(["--nick", "bob", "--auto-login"])
    assert _defaults_to_gui(["-v", "--nick", "bob"])
    assert not _defaults_to_gui(["stats"])
    assert not _defaults_to_gui(["-v", "stats"])
    assert not _defaults_to_gui(["--version"])
    assert not _defaults_to_gui(["agent", "--nick", "x"])


def undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += undocumented(sub, f"{path} {name}")
        elif action.help is None or (action.help != argparse.SUPPRESS and not action.help.strip()):
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


# The discovery subcommand's parser belongs to vcall/discovery (reported to its owner).
@pytest.mark.parametrize("name", [n for n in SUBCOMMANDS if n != "discovery"])
def test_every_option_has_help_text(name: str) -> None:
    parser = argparse.ArgumentParser(prog=f"vcall {name}")
    _load(name).add_arguments(parser)
    assert undocumented(parser, f"vcall {name}") == []


@pytest.mark.parametrize(
    "args",
    [
        ("agent", "--nick", "x", "--password", "p", "--listen-port", "99999"),
        ("agent", "--nick", "x", "--password", "p", "--ring-timeout", "-1"),
        ("agent", "--nick", "x", "--password", "p", "--answer-timeout", "nan"),
        ("agent", "--nick", "x", "--password", "p", "--seconds", "soon"),
        ("gui", "--listen-port", "65536"),
        ("gui", "--ring-timeout", "0"),
    ],
)
def test_bad_values_are_a_one_line_usage_error(args: tuple[str, ...]) -> None:
    done = vcall_run(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"vcall {args[0]}: error: argument "), errors


@pytest.mark.parametrize("text", ["0", "8000", "65535"])
def test_port_arg_accepts(text: str) -> None:
    assert port_arg(text) == int(text)


@pytest.mark.parametrize("text", ["-1", "65536", "99999", "80.5", "²", "", "0x50"])
def test_port_arg_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        port_arg(text)


@pytest.mark.parametrize("text", ["0", "-2", "nan", "inf", "1e99", "x"])
def test_seconds_arg_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        seconds_arg(text)


def test_delay_arg_takes_zero() -> None:
    assert delay_arg("0") == 0.0 and seconds_arg("0.5") == 0.5
    with pytest.raises(argparse.ArgumentTypeError):
        delay_arg("-0.1")


def test_count_arg() -> None:
    assert count_arg("1") == 1 and count_arg("512") == 512
    for text in ("0", "-3", "1.5", "²", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            count_arg(text)
