"""Build what a Spark cluster needs to run backforth: the wheel, a packed virtualenv and the launcher.

    python deploy/pack_env.py [--out dist] [--extras gpu]
    python deploy/pack_env.py --wheel-only     # the wheel alone: what the Databricks bundle deploys (databricks.yml)

Writes into ``--out``:
- ``backforth-<version>-py3-none-any.whl``: the project (jobs, UDFs, prompts and config inside);
- ``backforth-env.tar.gz``: a relocatable virtualenv with the wheel and its pinned dependencies (versions from
  requirements/lock.txt, or requirements/gpu-lock.txt with ``--extras gpu``), shipped to executors with
  ``--archives backforth-env.tar.gz#env``. PySpark and py4j are not in it: the cluster's own Spark puts its matching
  copies on the Python path of the driver and of every Python worker;
- ``backforth_submit.py``: the spark-submit entry point (deploy/submit.py).

The virtualenv links to this machine's Python interpreter (as venv-pack's do), so the cluster's nodes need the same
Python at the same path (``python3.11`` on the image); otherwise build the archive on that image, or use conda-pack.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
GPU_LOCK = ROOT / "requirements" / "gpu-lock.txt"  # vLLM and the CUDA torch it needs, for Linux x86_64 GPU executors


def lock_for(extras: list[str]) -> Path:
    """The pins an environment with ``extras`` installs by: the GPU lock where vLLM is wanted, else the main one."""
    return GPU_LOCK if "gpu" in extras else LOCK


PROVIDED_BY_CLUSTER = ("pyspark", "py4j")


def run(cmd: list[str], **kw) -> None:
    """Run a build command, echoing it; a failure stops the build with the tool's own output."""
    print("  $ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def uv() -> str:
    """The uv that `make venv` installed next to this interpreter, else one on PATH."""
    here = Path(sys.executable).with_name("uv")
    found = str(here) if here.exists() else shutil.which("uv")
    if not found:
        raise SystemExit("uv not found: run `make venv` first (it installs uv into the project's virtualenv)")
    return found


def build_wheel(out: Path) -> Path:
    """The project's wheel: the one builder behind `make dist` and the Databricks bundle's artifact. uv where `make
    venv` installed it, else pip (a bundle deploy may run from any Python that has pip)."""
    for old in out.glob("backforth-*.whl"):
        old.unlink()
    try:
        cmd = [uv(), "build", "-q", "--wheel", "--out-dir", str(out), str(ROOT)]
    except SystemExit:
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(ROOT)]
    run(cmd, env={**os.environ, "UV_NO_PROGRESS": "1"})
    (wheel,) = out.glob("backforth-*.whl")
    return wheel


def deps_key(extras: list[str]) -> str:
    """What the dependencies of the packed venv depend on: the lock file, the extras and this Python."""
    text = lock_for(extras).read_text() + ",".join(sorted(extras)) + sys.version
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_env(wheel: Path, env_dir: Path, extras: list[str]) -> None:
    """A relocatable venv holding the wheel, with dependency versions pinned by the lock file.

    The dependencies are kept from the previous build when the lock file and extras are unchanged (a stamp inside
    the venv says so); the project's wheel is always reinstalled."""
    python = str(env_dir / "bin" / "python")
    stamp = env_dir / ".backforth-deps"
    key = deps_key(extras)
    if stamp.is_file() and stamp.read_text() == key:
        print("  dependencies unchanged since the last build: reinstalling the wheel only", flush=True)
        run([uv(), "pip", "install", "-q", "--python", python, "--no-deps", "--reinstall", str(wheel)])
        return
    if env_dir.exists():
        shutil.rmtree(env_dir)
    run([uv(), "venv", "-q", "--relocatable", "--python", sys.executable, str(env_dir)])
    target = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    run([uv(), "pip", "install", "-q", "--python", python, "-c", str(lock_for(extras)), target])
    run([uv(), "pip", "uninstall", "-q", "--python", python, *PROVIDED_BY_CLUSTER])
    stamp.write_text(key)


def pack(env_dir: Path, archive: Path) -> None:
    """The venv's contents at the top level of a .tar.gz; Spark unpacks it into ./env on every executor. (A plain .tar
    would be quicker to pack, but Spark unpacks those with a Java untar that drops the executable bits.)"""
    tmp = archive.with_name(archive.name + ".partial")
    if shutil.which("tar") and shutil.which("gzip"):  # the C tools are several times faster than tarfile
        with open(tmp, "wb") as fh:
            # entries named bin/..., lib/... (Spark's unpacker refuses a "./" entry) and links stored as the files they
            # point to (it also refuses links that lead out of the archive, such as bin/python → the interpreter)
            names = sorted(p.name for p in env_dir.iterdir())
            tar = subprocess.Popen(["tar", "-C", str(env_dir), "-chf", "-", *names], stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-1"], stdin=tar.stdout, stdout=fh, check=True)
            if tar.wait():
                raise SystemExit(f"tar failed packing {env_dir}")
    else:
        with tarfile.open(tmp, "w:gz", compresslevel=1, dereference=True) as tf:
            for item in sorted(env_dir.iterdir()):
                tf.add(item, arcname=item.name)
    tmp.replace(archive)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. gpu for vLLM executors")
    parser.add_argument("--wheel-only", action="store_true", help="build the wheel and stop (the bundle's artifact)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    extras = [e for e in args.extras.split(",") if e]
    t0 = time.perf_counter()
    print(f">> wheel → {out}", flush=True)
    wheel = build_wheel(out)
    if args.wheel_only:
        print(f"built {wheel.name}")
        return 0
    print(">> virtualenv (pinned by requirements/lock.txt; pyspark and py4j come from the cluster)", flush=True)
    env_dir = out / "env"
    build_env(wheel, env_dir, extras)
    archive = out / "backforth-env.tar.gz"
    print(f">> packing {archive.name}", flush=True)
    pack(env_dir, archive)
    shutil.copy(Path(__file__).with_name("submit.py"), out / "backforth_submit.py")
    mib = archive.stat().st_size / 2**20
    took = time.perf_counter() - t0
    print(f"built {wheel.name}, {archive.name} ({mib:.0f} MiB), backforth_submit.py in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
