"""A local session started with the UI on serves it at the printed 127.0.0.1 URL (a real JVM in a subprocess)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = """
import sys, urllib.request
from backforth.config import Settings, SparkConfig
from backforth.spark import build_local_session
spark = build_local_session(Settings(data_dir=sys.argv[1], spark=SparkConfig(ui=True)))
url = spark.conf.get("spark.ui.port")
spark.range(3).count()
with urllib.request.urlopen(f"http://127.0.0.1:{url}/jobs/", timeout=30) as page:
    print("status", page.status, "jobs" in page.read().decode().lower())
spark.stop()
"""


@pytest.mark.timeout(300)
def test_the_ui_is_served_where_its_url_says(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = re.search(r"\[backforth\] Spark UI: http://127\.0\.0\.1:(\d+)", done.stderr)
    assert printed, done.stderr[-2000:]
    assert "status 200 True" in done.stdout
