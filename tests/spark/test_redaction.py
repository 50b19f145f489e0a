"""Spark's own view of its settings (SQL ``SET``) redacts the credentials backforth masks, an Azure account key too."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.spark


def test_sql_set_redacts_storage_keys_and_keeps_plain_settings(spark) -> None:
    planted = {
        "spark.hadoop.fs.azure.account.key.backforthtest.dfs.core.windows.net": "plantedazurekey0123",
        "spark.hadoop.fs.s3a.secret.key": "planteds3asecret0123",
        "spark.hadoop.fs.azure.sas.c.backforthtest.blob.core.windows.net": "plantedsas0123",
    }
    for key, value in planted.items():
        spark.conf.set(key, value)
    try:
        shown = {r[0]: r[1] for r in spark.sql("SET").collect()}
        assert all(key in shown and "planted" not in shown[key] for key in planted)
        assert not [key for key, value in shown.items() if "planted" in value]
        assert shown["spark.sql.session.timeZone"] == "UTC"  # plain settings as they are
        assert spark.conf.get("spark.hadoop.fs.s3a.secret.key") == "planteds3asecret0123"  # Spark still has them
    finally:
        for key in planted:
            spark.conf.unset(key)
