"""The management commands as a person types them: help with every option's default, accounts
and API keys with the admin pages' rules, and one line (no traceback, nothing created) where
there is no database."""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from backend.cli import build_parser
from tests.test_cli import clean_env

MANAGEMENT = (
    ("user", "list"),
    ("user", "add", "a@example.com", "--role", "admin"),
    ("user", "passwd", "a@example.com"),
    ("user", "delete", "a@example.com"),
    ("apikey", "list"),
    ("apikey", "create", "--name", "x"),
    ("apikey", "revoke", "1"),
    ("export", "stats"),
    ("export", "conversions"),
    ("purge", "--partner", "1"),
    ("demo",),
)


def run(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=60, input=stdin,
    )  # fmt: skip


def subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases name one parser twice
                found += subparsers(sub)
    return found


def test_every_option_says_what_it_does_and_its_default() -> None:
    for parser in subparsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{parser.prog} {action.option_strings or action.dest}: no help"
        shown = parser.format_help()
        for action in parser._actions:
            if action.default not in (None, False, argparse.SUPPRESS) and action.help:
                assert f"(default: {action.default})" in " ".join(shown.split()), (
                    f"{parser.prog} {action.dest}: default not shown"
                )


def test_version(tmp_path: Path) -> None:
    answer = run("--version", cwd=tmp_path)
    assert answer.returncode == 0
    assert answer.stdout.strip() == "clicktrail 0.1.0"


@pytest.mark.parametrize("command", MANAGEMENT, ids=" ".join)
def test_without_a_database_one_line_and_nothing_created(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    answer = run(*command, cwd=tmp_path)
    assert answer.returncode == 1
    assert answer.stdout == ""
    assert answer.stderr.count("\n") == 1, answer.stderr
    assert answer.stderr.startswith(f"no Clicktrail database at {tmp_path}/var/clicktrail.db: ")
    assert "CLICKTRAIL_DATABASE_URL" in answer.stderr
    assert list(tmp_path.iterdir()) == []


def test_accounts_and_keys_with_the_admin_pages_rules(tmp_path: Path) -> None:
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    database = tmp_path / "var" / "clicktrail.db"

    made = run("user", "add", "Boss@Example.com", "--role", "admin", cwd=tmp_path)
    assert made.returncode == 0
    assert "password: " in made.stdout
    typed = run("user", "add", "ops@example.com", "--role", "admin", "--password-stdin",
                cwd=tmp_path, stdin="correct horse battery\n")  # fmt: skip
    assert typed.returncode == 0
    assert "password" not in typed.stdout
    listed = run("user", "list", cwd=tmp_path).stdout.splitlines()
    assert listed[0].split() == ["email", "role", "partner", "created"]
    assert [line.split()[:2] for line in listed[1:]] == [
        ["boss@example.com", "admin"],
        ["ops@example.com", "admin"],
    ]
    short = run("user", "passwd", "ops@example.com", "--password-stdin", cwd=tmp_path, stdin="x\n")
    assert (short.returncode, short.stderr) == (
        1,
        "the password must have at least 10 characters\n",
    )
    with sqlite3.connect(database) as db:
        before = db.execute(
            "select password_hash from users where email='ops@example.com'"
        ).fetchone()
    assert run("user", "passwd", "ops@example.com", cwd=tmp_path).returncode == 0
    with sqlite3.connect(database) as db:
        after = db.execute(
            "select password_hash from users where email='ops@example.com'"
        ).fetchone()
    assert after != before

    assert run("user", "delete", "ops@example.com", cwd=tmp_path).returncode == 0
    last = run("user", "delete", "boss@example.com", cwd=tmp_path)
    assert (last.returncode, last.stderr) == (
        1,
        "boss@example.com is the only admin: add another one first\n",
    )
    unknown = run("user", "delete", "nobody@example.com", cwd=tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("no user with the email")
    with sqlite3.connect(database) as db:
        assert db.execute("select email from users").fetchall() == [("boss@example.com",)]

    assert run("apikey", "list", cwd=tmp_path).stdout == "no API keys\n"
    created = run("apikey", "create", "--name", "reporting", cwd=tmp_path).stdout
    key = created.splitlines()[-1]
    assert len(key) > 30
    keys = run("apikey", "list", cwd=tmp_path).stdout.splitlines()
    assert keys[1].split() == ["1", "reporting", "admin", keys[1].split()[-1]]
    assert key not in "".join(keys)
    assert run("apikey", "revoke", "1", cwd=tmp_path).returncode == 0
    again = run("apikey", "revoke", "1", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.startswith("no API key with id 1")
    with sqlite3.connect(database) as db:
        assert db.execute("select count(*) from api_keys").fetchone() == (0,)


def test_bad_values_are_one_line(tmp_path: Path) -> None:
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    for command, message in (
        (("export", "stats", "--filter", "nope=1"), "--filter 'nope=1': expected NAME=VALUE"),
        (("export", "stats", "--filter", "partner=x"), "partner must be a numeric id"),
        (("export", "stats", "--from", "2026-02-01", "--to", "2026-01-01"), "'from' must not be"),
        (("export", "stats", "--tz", "Mars/Olympus"), ""),
    ):
        answer = run(*command, cwd=tmp_path)
        assert answer.returncode != 0, command
        assert "Traceback" not in answer.stderr, answer.stderr
        assert message in answer.stderr
    bad_day = run("purge", "--before", "yesterday", cwd=tmp_path)
    assert bad_day.returncode == 2
    assert "expected a date as YYYY-MM-DD, got 'yesterday'" in bad_day.stderr
