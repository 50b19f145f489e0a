"""Config layering and validation: every mistake fails before Spark starts and names the file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backforth.cli import main
from backforth.config import ConfigError, load_settings, parse_override, redact
from backforth.jobs.ingest import IngestConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A copy of the project's conf/ that a test may edit."""
    target = tmp_path / "conf"
    shutil.copytree(REPO / "conf", target)
    return target


def test_layers_merge_in_order(conf: Path) -> None:
    (conf / "env" / "local.yaml").write_text("tables:\n  schema: from_env\njobs:\n  ingest:\n    reprocess: true\n")
    s = load_settings("ingest", IngestConfig, "local", ["tables.schema=from_cli"], conf)
    assert s.tables.schema == "from_cli"  # --set beats env
    assert s.job.reprocess is True  # env file's jobs.ingest section reaches the job
    assert s.job.inputs[1].text_field == "content"  # from conf/jobs/ingest.yaml
    assert s.spark.master == "local[2,3]"  # from base.yaml


def test_unknown_key_names_file_and_suggests(conf: Path) -> None:
    (conf / "jobs" / "ingest.yaml").write_text("inputs: []\nreprocesss: true\n")
    with pytest.raises(ConfigError) as err:
        load_settings("ingest", IngestConfig, "local", [], conf)
    msg = str(err.value)
    assert str(conf / "jobs" / "ingest.yaml") in msg
    assert "job.reprocesss" in msg and "did you mean 'reprocess'" in msg


def test_unknown_nested_key_in_list_item(conf: Path) -> None:
    (conf / "jobs" / "ingest.yaml").write_text("inputs:\n  - path: x\n    format: jsonl\n    txt_field: body\n")
    with pytest.raises(ConfigError, match=r"ingest.yaml: unknown key 'job.inputs\[0\].txt_field'"):
        load_settings("ingest", IngestConfig, "local", [], conf)


def test_wrong_type_and_bad_choice(conf: Path) -> None:
    with pytest.raises(ConfigError, match=r"--set: spark.shuffle_partitions: expected int, got str 'many'"):
        load_settings("ingest", IngestConfig, "local", ["spark.shuffle_partitions=many"], conf)
    (conf / "jobs" / "ingest.yaml").write_text("inputs:\n  - path: x\n    format: csv\n")
    with pytest.raises(ConfigError, match="ingest.yaml: job.inputs\\[0\\].format: 'csv' is not one of"):
        load_settings("ingest", IngestConfig, "local", [], conf)


def test_missing_required_value(conf: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing required value 'job.inputs\[0\].path'"):
        load_settings("ingest", IngestConfig, "local", ["job.inputs=[{format: jsonl}]"], conf)


def test_unknown_env_lists_known(conf: Path) -> None:
    with pytest.raises(ConfigError, match="known environments: cluster, dev, local, prod"):
        load_settings("ingest", IngestConfig, "staging", [], conf)


def test_parse_override_types() -> None:
    assert parse_override("a.b=10") == ("a.b", 10)
    assert parse_override("a=[x, y]") == ("a", ["x", "y"])
    assert parse_override("a=null") == ("a", None)
    assert parse_override("a=x=y") == ("a", "x=y")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("novalue")


def test_secrets_are_masked() -> None:
    data = {"mlflow": {"token": "abc", "tracking_uri": "x"}, "list": [{"api_key": "k"}]}
    assert redact(data) == {"mlflow": {"token": "***", "tracking_uri": "x"}, "list": [{"api_key": "***"}]}
    counts = {"sampling": {"max_tokens": 256}, "reserved_tokens": 1536, "hf_access_token": "hf_x", "dbPassword": "p"}
    assert redact(counts) == {"sampling": {"max_tokens": 256}, "reserved_tokens": 1536, "hf_access_token": "***",
                              "dbPassword": "***"}  # fmt: skip


def test_dry_run_prints_resolved_config_without_spark(capsys: pytest.CaptureFixture, conf: Path) -> None:
    code = main(["ingest", "--dry-run", "--conf-dir", str(conf), "--set", "job.reprocess=true"])
    out = capsys.readouterr().out
    assert code == 0
    assert "reprocess: true" in out and "format: warc" in out


def test_dry_run_does_not_import_spark_or_mlflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from backforth.cli import main; rc = main(['ingest', '--dry-run']); "
        "heavy = [m for m in ('pyspark.sql', 'mlflow', 'delta') if m in sys.modules]; print(heavy); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("[]"), out.stdout[-200:]


def test_cli_config_error_exit_code(capsys: pytest.CaptureFixture, conf: Path) -> None:
    code = main(["ingest", "--dry-run", "--conf-dir", str(conf), "--set", "job.nope=1"])
    assert code == 2
    assert "config error: --set: unknown key 'job.nope'" in capsys.readouterr().err


def test_connection_string_credentials_are_masked_wherever_config_is_shown() -> None:
    url = "sc://dbc-1.cloud.databricks.com:443/;token=dapi0123456789;x-databricks-cluster-id=0101-abc"
    shown = redact({"spark": {"remote": url, "master": "local[2]"}})
    assert shown["spark"]["remote"] == "sc://dbc-1.cloud.databricks.com:443/;token=***;x-databricks-cluster-id=0101-abc"
    assert shown["spark"]["master"] == "local[2]" and "dapi" not in str(shown)


def test_a_sqlite_mlflow_store_on_a_cluster_driver_is_refused_unless_allowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from backforth.config import MlflowConfig, Settings
    from backforth.runner import refuse_driver_local_store

    settings = Settings(data_dir=str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    refuse_driver_local_store(settings, uri)  # a laptop: the store stays where the user is
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    with pytest.raises(ConfigError, match="lost with it.*mlflow.allow_local_store=true"):
        refuse_driver_local_store(settings, uri)
    refuse_driver_local_store(settings, "databricks")  # the workspace's tracking server
    refuse_driver_local_store(settings, "http://mlflow:5000")
    allowed = Settings(data_dir=str(tmp_path), mlflow=MlflowConfig(allow_local_store=True))
    refuse_driver_local_store(allowed, uri)


def test_prompt_names_suit_unity_catalogs_registry_there_and_stay_plain_elsewhere(tmp_path: Path) -> None:
    from backforth.config import MlflowConfig, Settings, TablesConfig
    from backforth.tracking import prompt_name

    uc = Settings(tables=TablesConfig(catalog="main", schema="backforth_dev_ana"),
                  mlflow=MlflowConfig(registry_uri="databricks-uc"))  # fmt: skip
    assert prompt_name("backtranslate", uc) == "main.backforth_dev_ana.backforth_backtranslate"
    assert prompt_name("judge-text", uc) == "main.backforth_dev_ana.backforth_judge_text"
    assert prompt_name("backtranslate", Settings(data_dir=str(tmp_path))) == "backforth-backtranslate"
