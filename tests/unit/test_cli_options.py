"""The operator's options of the CLI that need no Spark: --version and --log-level."""

from __future__ import annotations

import logging
from importlib.metadata import version

import pytest

from backforth import __version__
from backforth.cli import main


def test_version_names_backforth_spark_and_the_engines(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith(f"backforth {__version__} (Python 3.")
    assert f"pyspark {version('pyspark')}" in line and f"mlflow {version('mlflow')}" in line


def test_log_level_sets_backforth_lines_with_their_time(capsys: pytest.CaptureFixture) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = []
    try:
        assert main(["--log-level", "warning", "ingest", "--dry-run"]) == 0
        assert root.level == logging.WARNING
        logging.getLogger("backforth.test").warning("a warning")
        logging.getLogger("backforth.test").info("an info line")
        err = capsys.readouterr().err
        assert "an info line" not in err
        (line,) = [x for x in err.splitlines() if "a warning" in x]
        assert line.split()[1:3] == ["WARNING", "[backforth.test]"] and line[2] == ":" and line[5] == ":"
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_an_unknown_log_level_is_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--log-level", "loud", "ingest", "--dry-run"])
    assert done.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
