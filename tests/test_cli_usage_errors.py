"""A mistyped command line is a usage message and exit code 2, never a traceback -- whichever
click raises it (typer >= 0.2x vendors click as ``typer._click``)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("args, message", [
    (["train", "--no-such-option"], "No such option: --no-such-option"),
    (["evaluate", "x.csv", "--bogus"], "No such option: --bogus"),
    (["evaluate"], "Missing argument"),
    (["experiment", "architectures", "--models"], "requires an argument"),
    (["data", "pack", "a.csv", "b.npz", "--preset", "12"], "--preset"),
    (["no-such-command"], "No such command"),
])
def test_usage_errors_exit_2_without_traceback(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "wildfer.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert message in text and "Traceback" not in text, text
    assert "Error: " in text


def test_in_process_entry_point_returns_2(cli):
    code, text = cli(["train", "--no-such-option"])
    assert code == 2 and "No such option" in text and "Traceback" not in text


@pytest.mark.parametrize("name", ["a[/]b.csv", "[happy].csv", "x\\[bold]y.csv"])
def test_error_message_is_printed_literally(cli, tmp_path, name):
    """Square brackets in a user error (a path, a class name) are text, not console markup."""
    code, text = cli(["evaluate", str(tmp_path / name)])
    assert code == 2 and "Traceback" not in text, text
    assert f"error: {tmp_path / name}: file or folder not found" in text, text
