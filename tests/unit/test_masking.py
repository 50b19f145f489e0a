"""What counts as a secret where the config is printed, logged or stored: keys, Spark and Hadoop conf keys, URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from backforth.config import ConfigError, load_settings, nest
from backforth.masking import is_secret_key, mask_url_secrets, redact, split_userinfo

REPO = Path(__file__).resolve().parents[2]

SECRET_KEYS = [
    "token", "access_token", "hf_access_token", "hfaccesstoken", "DATABRICKS_TOKEN", "pat", "db_password", "dbPassword",
    "passwd", "api_key", "apiKey", "x-api-key", "private_key", "client_secret", "credentials",
    # Spark and Hadoop conf keys
    "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net", "fs.azure.account.key.acct.blob.core.windows.net",
    "fs.azure.account.oauth2.client.secret.acct.dfs.core.windows.net",
    "fs.azure.sas.container.acct.blob.core.windows.net",
    "fs.azure.sas.fixed.token", "spark.hadoop.fs.s3a.secret.key", "fs.s3a.bucket.b.secret.key", "fs.s3a.access.key",
    "fs.s3a.session.token", "fs.s3a.encryption.key", "fs.gs.auth.service.account.private.key", "spark.ssl.keyPassword",
    "spark.ssl.keyStorePassword", "spark.authenticate.secret", "spark.executorEnv.MLFLOW_TRACKING_PASSWORD",
    "spark.databricks.token",
    # names in connection strings and URL queries
    "AccountKey", "SharedAccessSignature", "AWSAccessKeyId", "aws_secret_access_key", "X-Amz-Security-Token",
    "X-Amz-Credential", "sasToken",
]  # fmt: skip

NOT_SECRET_KEYS = [
    "max_tokens", "maxTokens", "reserved_tokens", "prompt_tokens", "token_budget", "max_token_len", "token_type",
    "tokenizer", "key", "keys", "seed_key", "primary_key", "doc_id", "id_field", "tracking_uri", "registry_uri",
    "model_options", "sampling.stop", "job.sampling.max_tokens",
    "spark.sql.shuffle.partitions", "spark.io.encryption.keySizeBits", "spark.io.encryption.keygen.algorithm",
    "spark.ssl.keyStore", "fs.s3a.endpoint", "fs.s3a.aws.credentials.provider",
    "hadoop.security.credential.provider.path",
    "fs.azure.account.auth.type", "fs.azure.account.oauth2.client.id", "fs.azure.account.keyprovider.acct",
    "fs.azure.sas.token.provider.type",
]  # fmt: skip


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_keys_that_name_a_credential_are_secret(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", NOT_SECRET_KEYS)
def test_counts_fields_and_plain_spark_settings_are_not(key: str) -> None:
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:PLANTED@127.0.0.1:5000", "http://user:***@127.0.0.1:5000"),
        ("https://u:p@ss@host/x@y", "https://u:***@host/x@y"),  # an unescaped @ in the password
        ("redis://:PLANTED@h:6379/0", "redis://:***@h:6379/0"),
        (
            "postgresql://u:PLANTED@h/db?sslmode=require&password=P2",
            "postgresql://u:***@h/db?sslmode=require&password=***",
        ),
        (
            "sc://h:443/;token=dapi0123;x-databricks-cluster-id=0101",
            "sc://h:443/;token=***;x-databricks-cluster-id=0101",
        ),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=ab+/c==;EndpointSuffix=core.windows.net",
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;EndpointSuffix=core.windows.net",
        ),
        (
            "https://a.blob.core.windows.net/c?sv=2022-11-02&sig=AB%2Fc&se=x",
            "https://a.blob.core.windows.net/c?sv=2022-11-02&sig=***&se=x",
        ),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=f00",
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        ("jdbc:sqlserver://h;user=x;password=PLANTED;database=d", "jdbc:sqlserver://h;user=x;password=***;database=d"),
        ("host=h user=u password='a b' dbname=d", "host=h user=u password=*** dbname=d"),
        ("https://h/v1?key=AIzaPLANTED&q=1", "https://h/v1?key=***&q=1"),
        (
            "mlflow ui --backend-store-uri http://u:PW@h:1 --port 5",
            "mlflow ui --backend-store-uri http://u:***@h:1 --port 5",
        ),
    ],
)
def test_credentials_inside_urls_and_connection_strings_are_masked(text: str, shown: str) -> None:
    assert mask_url_secrets(text) == shown
    assert mask_url_secrets(shown) == shown  # masking twice changes nothing


@pytest.mark.parametrize(
    "text",
    ["sqlite:////tmp/x/mlflow.db", "file:///tmp/mlruns", "http://127.0.0.1:5000", "databricks", "local[2]",
     "https://h/x?page=2&sort=key", "models:/backforth-backward@candidate", "abfss://c@acct.dfs.core.windows.net/p",
     "max_tokens=256", "Could you explain tokens and keys?"],
)  # fmt: skip
def test_urls_without_credentials_stay_as_they_are(text: str) -> None:
    assert mask_url_secrets(text) == text


def test_redact_masks_by_path_spark_conf_keys_and_urls() -> None:
    conf = {
        "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": "AZ",
        "spark.hadoop.fs.s3a.secret.key": "S3",
        "spark.hadoop.fs.s3a.access.key": "AKIA",
        "spark.sql.shuffle.partitions": "4",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    }
    data = {
        "spark": {"conf": conf, "remote": "sc://h:443/;token=T"},
        "mlflow": {"tracking_uri": "http://u:PW@h:5000", "experiment": "backforth"},
        "job": {"model_options": {"options": {"api_key": "K", "reply": "x"}}, "keys": ["doc_id"], "max_tokens": 3},
        "secrets": {"hf": "H", "nested": ["L"]},  # everything below a secret's key
    }
    shown = redact(data)
    masked = ("spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net", "spark.hadoop.fs.s3a.secret.key",
              "spark.hadoop.fs.s3a.access.key")  # fmt: skip
    assert shown["spark"]["conf"] == {k: "***" if k in masked else v for k, v in conf.items()}
    assert shown["spark"]["remote"] == "sc://h:443/;token=***"
    assert shown["mlflow"] == {"tracking_uri": "http://u:***@h:5000", "experiment": "backforth"}
    assert shown["job"] == {"model_options": {"options": {"api_key": "***", "reply": "x"}}, "keys": ["doc_id"],
                            "max_tokens": 3}  # fmt: skip
    assert shown["secrets"] == {"hf": "***", "nested": ["***"]}


def test_split_userinfo_moves_credentials_out_of_a_uri() -> None:
    assert split_userinfo("https://us%40r:p%2Fw@h:5000/x") == ("https://h:5000/x", "us@r", "p/w")
    assert split_userinfo("http://127.0.0.1:5000") == ("http://127.0.0.1:5000", None, None)
    assert split_userinfo("sqlite:////tmp/a.db") == ("sqlite:////tmp/a.db", None, None)


def test_set_reaches_one_dotted_spark_conf_key() -> None:
    key = "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net"
    assert nest(f"spark.conf.{key}", "AZ") == {"spark": {"conf": {key: "AZ"}}}
    settings = load_settings(None, None, "local", [f"spark.conf.{key}=AZ"], REPO / "conf")
    assert settings.spark.conf == {key: "AZ"}


def test_config_errors_do_not_quote_a_secret_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, None, "local", ["mlflow.tracking_uri=[http://u:PLANTED@h:1]"], REPO / "conf")
    assert "PLANTED" not in str(caught.value) and "***" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_settings(None, None, "local", ["spark.conf={fs.s3a.secret.key: [PLANTED]}"], REPO / "conf")
    assert "PLANTED" not in str(caught.value)


def test_mlflow_gets_an_http_uri_without_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from backforth.runner import without_credentials

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert without_credentials("http://u:p%40ss@127.0.0.1:5000") == "http://127.0.0.1:5000"
    import os

    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("u", "p@ss")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "set-by-the-user")  # credentials set explicitly win
    assert without_credentials("https://u:other@h") == "https://h"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "set-by-the-user"
    # a database store keeps its URI: MLflow has no other way to get the password
    assert without_credentials("postgresql://u:pw@h/db") == "postgresql://u:pw@h/db"


def test_info_shows_the_tracking_uri_masked(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from backforth.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["info", "--conf-dir", str(REPO / "conf"), "--set", "mlflow.tracking_uri=http://u:PLANTED@h:5000"]) == 0
    out = capsys.readouterr().out
    assert "http://u:***@h:5000" in out and "PLANTED" not in out
