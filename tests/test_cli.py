"""The `healthtwin` command as a newcomer meets it: its help lists every command and explains every option,
`--version` answers, and a mistake (a busy port, a data folder another server holds, an unknown role) costs
one clear line and leaves nothing behind."""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from healthtwin.cli import build_parser, main
from tests.conftest import serving


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "healthtwin.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _walk(parser: argparse.ArgumentParser, path: str = "healthtwin"):
    yield path, parser
    for name, sub in _subparsers(parser).items():
        yield from _walk(sub, f"{path} {name}")


def test_help_lists_every_command_views_included(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    commands = _subparsers(build_parser())
    assert {"serve", "load", "generate", "demo", "views", "token", "users", "clients", "audit"} <= set(commands)
    for name in commands:
        assert f"\n    {name} " in text, name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from healthtwin import __version__
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"healthtwin {__version__}")


def test_every_option_has_help_and_quantities_their_unit() -> None:
    missing = []
    for path, parser in _walk(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
                continue
            if not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    helps = {(path, o): a.help for path, p in _walk(build_parser()) for a in p._actions for o in a.option_strings}
    assert "seconds" in helps[("healthtwin token", "--lifetime")]
    assert "port" in helps[("healthtwin serve", "--port")].lower()
    assert "per second" in helps[("healthtwin serve", "--rate-limit")]
    assert "citizens" in helps[("healthtwin demo", "--patients")]


def test_token_refuses_unknown_roles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert main(["token", "--data-dir", data, "--subject", "x", "--roles", "clinican"]) == 2
    err = capsys.readouterr().err
    assert "unknown role 'clinican'" in err and "clinician" in err
    assert not (tmp_path / "data").exists()  # no key was created for a token that was not minted
    assert main(["token", "--data-dir", data, "--subject", "x", "--roles", "clinician,label:PSY"]) == 0
    assert capsys.readouterr().out.count(".") == 2  # a JWT


def test_users_and_clients_refuse_unknown_roles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    assert main(["users", "add", "--data-dir", data, "bob", "--roles", "doctor", "--password-stdin"]) == 2
    assert "unknown role 'doctor'" in capsys.readouterr().err
    assert main(["clients", "add", "--data-dir", data, "lab", "--scopes", "system/*.rs", "--roles", "citizen"]) == 2
    assert "unknown role 'citizen'" in capsys.readouterr().err  # a backend service is no citizen


def test_a_busy_port_is_one_line_before_any_key_is_written(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        done = _run("serve", "--data-dir", str(tmp_path / "data"), "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"healthtwin serve: error: port {port} on 127.0.0.1 is already in use (another server?); stop it or choose "
        "another --port"]
    assert not (tmp_path / "data").exists()


def test_a_second_server_on_the_same_data_folder_says_what_holds_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(tmp_path, "--data-dir", str(data)) as (proc, port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            other = s.getsockname()[1]
        done = _run("serve", "--data-dir", str(data), "--port", str(other))
        assert proc.poll() is None  # the first one serves on
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"is in use by process {proc.pid}" in lines[0] and "serving.lock" in lines[0]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_on_a_terminal_is_a_bar_with_total_percentage_and_time_left() -> None:
    import io

    from healthtwin.progress import Bar
    out, clock = io.StringIO(), _Clock()
    bar = Bar("generating", 5_000, "citizens", out, tty=True, clock=clock)
    clock.now += 10
    bar(2_000)
    line = out.getvalue().rsplit("\r", 1)[1]
    assert "[#########" in line and " 40%" in line and "2,000/5,000 citizens" in line and "0:15 left" in line
    clock.now += 15
    bar(5_000)
    bar.close()
    assert out.getvalue().endswith("done   \n")


def test_progress_elsewhere_is_plain_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    import io
    import logging

    from healthtwin.progress import LOG_EVERY, Bar
    out, clock = io.StringIO(), _Clock()
    bar = Bar("loading", 1_000, "resources", out, tty=False, clock=clock)
    with caplog.at_level(logging.INFO, "healthtwin"):
        for done in range(0, 1_001, 10):
            clock.now += 0.5
            bar(done)
        bar.close()
    assert out.getvalue() == ""  # no carriage returns in a log
    lines = [r.getMessage() for r in caplog.records]
    assert 2 <= len(lines) <= 100 * 0.5 / LOG_EVERY + 2
    assert lines[-1] == "loading: 1,000/1,000 resources (100%), done"
    assert all("[" not in line and "\r" not in line for line in lines)


def test_load_knows_its_total_from_ndjson(tmp_path: Path) -> None:
    from healthtwin.loading import expected_total
    (tmp_path / "Patient.ndjson").write_bytes(b'{"resourceType":"Patient"}\n' * 3)
    (tmp_path / "Observation.ndjson").write_bytes(b'{"resourceType":"Observation"}\n' * 4)
    assert expected_total([str(tmp_path)]) == 7
    (tmp_path / "bundle.json").write_bytes(b"{}")
    assert expected_total([str(tmp_path)]) is None  # a Bundle's entries are not counted: no percentage then
    assert expected_total(["-"]) is None


def test_generate_with_an_end_date_is_reproducible(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["generate", "--patients", "5", "--out", str(tmp_path / name), "--end-date", "2024-12-31",
                     "--events", "none"]) == 0
    a, b = ((tmp_path / n / "Observation.ndjson").read_bytes() for n in ("a", "b"))
    assert a == b and b"2024-12-31" in (tmp_path / "a" / "manifest.json").read_bytes()


def test_generate_refuses_a_date_it_cannot_read(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--patients", "5", "--out", str(tmp_path / "c"), "--end-date", "31/12/2024"])
    assert exc.value.code == 2 and "a date is YYYY-MM-DD" in capsys.readouterr().err
