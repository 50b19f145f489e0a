"""The wheel as a cluster installs it: built by the one builder `make dist` and the bundle share, installed into a
fresh virtualenv without the `local` extra (as a Databricks wheel task or a cluster image would), it brings no Spark
of its own, puts nothing but `backforth` into site-packages, and every job module imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from backforth import __version__
from backforth.registry import load_jobs

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")

PROBE = """
import importlib, importlib.util, json, pkgutil
import backforth.jobs, backforth.udfs
from backforth.registry import load_jobs
jobs = load_jobs()
packages = (backforth.jobs, backforth.udfs)
modules = [m.name for p in packages for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")]
for name in modules:
    importlib.import_module(name)
found = {m: importlib.util.find_spec(m) is not None for m in ("pyspark", "delta", "jobs", "udfs")}
where = importlib.import_module("backforth").__file__
print(json.dumps({"jobs": sorted(jobs), "modules": modules, "found": found, "where": where}))
"""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.timeout(960)  # a fresh virtualenv: the dependencies come from uv's cache (a minute), or the index
def test_wheel_installs_without_spark_under_its_own_namespace(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    run([sys.executable, str(REPO / "deploy" / "pack_env.py"), "--wheel-only", "--out", str(out)], cwd=REPO)
    (wheel,) = out.glob("backforth-*.whl")
    assert wheel.name.startswith(f"backforth-{__version__}-")  # the version is defined once, in backforth/__init__
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"backforth", f"backforth-{__version__}.dist-info"}
    for shipped in ("backforth/jobs/ingest.py", "backforth/udfs/prompts/backtranslate.yaml",
                    "backforth/jobs/report/prose.txt", "backforth/conf/env/cluster.yaml"):  # fmt: skip
        assert shipped in names
    meta = zipfile.ZipFile(wheel).read(f"backforth-{__version__}.dist-info/METADATA").decode()
    spark_reqs = [x for x in meta.splitlines() if x.startswith("Requires-Dist: pyspark")]
    assert spark_reqs and all('extra == "local"' in x for x in spark_reqs)

    venv = tmp_path / "venv"
    env = {**os.environ, "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(cache() / "uv")), "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], env=env)
    python = venv / "bin" / "python"
    run([str(UV), "pip", "install", "-q", "--python", str(python), "-c", str(REPO / "requirements" / "lock.txt"),
         str(wheel)], env=env)  # fmt: skip
    probe = json.loads(run([str(python), "-c", PROBE], cwd=tmp_path, env=env).stdout.strip().splitlines()[-1])
    assert probe["where"].startswith(str(venv))  # the installed wheel, not this checkout
    assert probe["jobs"] == sorted(load_jobs())
    assert {"backforth.jobs.respond", "backforth.jobs.report.page", "backforth.udfs.minhash"} <= set(probe["modules"])
    assert probe["found"] == {"pyspark": False, "delta": False, "jobs": False, "udfs": False}
    helped = run([str(venv / "bin" / "backforth"), "--help"], cwd=tmp_path, env=env).stdout
    assert all(name in helped for name in load_jobs())


def cache() -> Path:
    from backforth.spark import cache_dir

    return cache_dir()
