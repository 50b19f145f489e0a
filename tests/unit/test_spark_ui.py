"""The Spark UI and console progress of local sessions: on in a terminal (UI on 127.0.0.1), off elsewhere."""

from __future__ import annotations

import io
import sys

import pytest

from backforth.config import Settings, SparkConfig
from backforth.spark import ui_conf


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_ui_on_loopback_and_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal())
    conf = ui_conf(Settings())
    assert conf["spark.ui.enabled"] == "true" and conf["spark.ui.showConsoleProgress"] == "true"
    assert conf["spark.driver.bindAddress"] == conf["spark.driver.host"] == "127.0.0.1"
    assert 0 < int(conf["spark.ui.port"]) < 65536
    off = ui_conf(Settings(spark=SparkConfig(ui=False, progress=False)))
    assert off == {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}


def test_no_terminal_no_ui_and_a_cluster_master_keeps_its_driver_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # CI, a log file, a test run
    assert ui_conf(Settings()) == {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    monkeypatch.setattr(sys, "stderr", Terminal())
    cluster = SparkConfig(master="spark://head:7077")
    assert ui_conf(Settings(spark=cluster))["spark.ui.enabled"] == "false"  # only when asked for
    asked = ui_conf(Settings(spark=SparkConfig(master="spark://head:7077", ui=True)))
    assert asked["spark.ui.enabled"] == "true" and "spark.driver.host" not in asked  # executors must reach it
