"""The error model: a mistake the user can fix is one line on stderr and exit code 2; a bug keeps its traceback.

The cases that need Spark run in process in tests/spark/test_missing_inputs.py and through the CLI in
tests/e2e/test_user_errors.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backforth.cli import main
from backforth.errors import BadPathError, ConfigError, MetastoreLockedError, MissingInputError, UserError

REPO = Path(__file__).resolve().parents[2]


def one_line(err: str) -> str:
    """The single line ``err`` holds (and no traceback)."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_the_family() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(BadPathError, FileNotFoundError)
    assert all(issubclass(c, UserError) for c in (ConfigError, MissingInputError, MetastoreLockedError, BadPathError))
    assert str(MissingInputError("t.docs_raw is missing", "ingest")) == (
        "t.docs_raw is missing: run `backforth ingest` first"
    )
    from backforth.config import ConfigError as FromConfig

    assert FromConfig is ConfigError


def test_bad_config_key_is_one_line_on_stderr_exit_2(tmp_path: Path) -> None:
    """As a user runs it, in a process of its own: nothing else on stderr, no trace, before Spark starts."""
    cmd = [sys.executable, "-m", "backforth.cli", "ingest", "--set", f"data_dir={tmp_path}", "--set", "job.nope=1"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert one_line(out.stderr) == (
        "backforth: config error: --set: unknown key 'job.nope' "
        "(known keys: inputs, output_table, rejects_table, files_table, reprocess, listing, max_file_bytes, "
        "include_hidden)"
    )
    assert not (tmp_path / "metastore_db").exists()


def test_unknown_model_profile_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["submit-args", "--model", "no-such-model"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("backforth: config error: model profile 'no-such-model': no ") and "smollm2-cpu" in line


def test_conf_dir_without_base_yaml_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "local.yaml").write_text("{}\n")
    assert main(["ingest", "--dry-run", "--conf-dir", str(tmp_path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == f"backforth: config error: {tmp_path / 'base.yaml'}: cannot read it (No such file or directory)"


def test_multi_line_message_is_printed_as_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import backforth.runner

    def fail(spec, settings):
        raise MissingInputError("m: not found\n  (MlflowException: RESOURCE_DOES_NOT_EXIST)", "finetune")

    monkeypatch.setattr(backforth.runner, "run_job", fail)
    assert main(["ingest"]) == 2
    assert one_line(capsys.readouterr().err) == (
        "backforth: m: not found (MlflowException: RESOURCE_DOES_NOT_EXIST): run `backforth finetune` first"
    )


def test_locked_metastore_is_one_line_without_the_java_trace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pyspark.sql import SparkSession

    from backforth.config import Settings
    from backforth.spark import build_local_session

    def locked(self):
        raise RuntimeError("py4j...: ERROR XSDB6: Another instance of Derby may have already booted the database\n\tat")

    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", locked)
    with pytest.raises(MetastoreLockedError) as caught:
        build_local_session(Settings(data_dir=str(tmp_path)))
    error = caught.value  # the Py4J error is neither chained nor shown as its context
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert main(["sql", "SELECT 1", "--set", f"data_dir={tmp_path}"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"backforth: the local metastore {tmp_path / 'metastore_db'} is held by another")
    assert "--set data_dir=" in line and "XSDB6" not in line


def test_missing_delta_jars_for_an_offline_submit(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import backforth.spark

    monkeypatch.setattr(backforth.spark, "cached_delta_jars", lambda: [])
    assert main(["submit-args", "--offline"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("backforth: no Delta jars cached in ") and line.endswith(": run `backforth setup` first")


def test_missing_tokenizer_is_a_bad_path(tmp_path: Path) -> None:
    from backforth.udfs.tokens import tokenizer_file

    with pytest.raises(BadPathError, match="no tokenizer.json there"):
        tokenizer_file(str(tmp_path))


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a UserError: main lets it through, so Python prints the trace (in process: it raises)."""
    import backforth.runner

    def buggy(spec, settings):
        return 1 / 0

    monkeypatch.setattr(backforth.runner, "run_job", buggy)
    with pytest.raises(ZeroDivisionError):
        main(["ingest"])


def test_a_bug_prints_its_traceback_and_exit_1(tmp_path: Path) -> None:
    code = (
        "import sys, backforth.runner; from backforth.cli import main\n"
        "def buggy(spec, settings): return 1 / 0\n"
        "backforth.runner.run_job = buggy\n"
        f"sys.exit(main(['ingest', '--set', 'data_dir={tmp_path}']))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "Traceback" in out.stderr and out.stderr.rstrip().endswith("ZeroDivisionError: division by zero")


def test_user_errors_before_spark_are_one_line_in_a_real_cli(tmp_path: Path) -> None:
    """Every mistake that fails before Spark starts, as a user meets it: a CLI process each (run side by side), one
    line naming the fix on stderr, exit code 2, no traceback. The README's table of user errors lists them; the ones
    where Spark has started are in tests/e2e/test_user_errors.py."""
    broken = tmp_path / "conf"
    shutil.copytree(REPO / "conf", broken)
    (broken / "env" / "local.yaml").write_text("spark:\n  master: local[2]\n   app_name: x\n")
    data = ["--set", f"data_dir={tmp_path / 'data'}"]
    cases = {
        ("nosuchjob",): "backforth: argument <command>: invalid choice: 'nosuchjob' (choose from 'backtranslate',",
        (
            "ingest",
            "--set",
            "job.reprocess",
            *data,
        ): "backforth: config error: --set 'job.reprocess': expected key=value",
        ("ingest", "--conf-dir", str(broken), *data): f"backforth: config error: {broken / 'env' / 'local.yaml'}, "
        "line 3, column 12: not valid YAML (mapping values are not allowed here)",
        ("ingest", "--dry-run", "--conf-dir", str(tmp_path / "none")): f"backforth: config error: --conf-dir "
        f"{tmp_path / 'none'}: no such folder",
        ("ingest", "--dry-run", "--set", "data_dir="): "backforth: config error: --set: data_dir is empty",
        ("backtranslate", "--dry-run", "--set", "job.model=nope", *data): "backforth: config error: model profile "
        "'nope': no ",
        ("score", "--set", "job.model_options.batchsize=4", *data): "backforth: config error: job.model_options: "
        "unknown key 'batchsize' (did you mean 'batch_size'?)",
        ("rewrite", "--dry-run", "--set", "job.shard_rows=-5", *data): "backforth: config error: --set: "
        "job.shard_rows: -5 is less than 1",
    }
    procs = {
        args: subprocess.Popen([sys.executable, "-m", "backforth.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for args in cases
    }  # fmt: skip
    for args, start in cases.items():
        _, err = procs[args].communicate(timeout=120)
        assert procs[args].returncode == 2, (args, err)
        assert one_line(err).startswith(start), (args, err)
    assert not (tmp_path / "data").exists()  # nothing ran: no data folder, no metastore
