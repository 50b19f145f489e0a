"""The Spark session: reuse the active one (spark-submit, Databricks), connect to a Spark Connect endpoint when one
is named (``--remote`` / ``$SPARK_REMOTE``: Serverless and Standard compute, Databricks Connect), else build a local
Delta-enabled one. Nothing here or on the job path touches the SparkContext, RDDs or the JVM, so every job runs the
same over Spark Connect.

Local sessions keep a persistent catalog in the data folder (a Derby-backed Hive metastore plus a warehouse
directory), so a table written by one command is visible to the next. Delta's jars come from Spark's own package
resolution into a cache outside the repo (``$BACKFORTH_CACHE/ivy``); once there, they are used offline.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backforth.config import Settings
from backforth.errors import MetastoreLockedError, MissingInputError, UserError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("backforth.spark")

SCALA_VERSION = "2.13"  # Spark 4 is built for Scala 2.13 only

# Spark's own redaction (the output of SQL `SET`, the UI, event logs) knows secret, password, token and access.key:
# an Azure account key, a private key and a SAS are as secret. backforth's own masking: backforth.config.is_secret_key.
REDACTION_REGEX = r"(?i)secret|password|token|access[.]key|account[.]key|private[.]key|[.]sas[.]|credential"

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def cache_dir() -> Path:
    """Heavy downloads (virtualenv, jars, models) live here, outside any clone, so re-runs reuse them."""
    return Path(os.environ.get("BACKFORTH_CACHE", Path.home() / ".cache" / "backforth")).expanduser()


def delta_package() -> str:
    """Maven coordinate of the Delta jar that matches the installed delta-spark."""
    from importlib.metadata import version

    return f"io.delta:delta-spark_{SCALA_VERSION}:{version('delta-spark')}"


def cached_delta_jars() -> list[str]:
    """Jars already resolved into the ivy cache for this delta-spark version, or [] when not all are there."""
    from importlib.metadata import version

    jars = cache_dir() / "ivy" / "jars"
    wanted = [
        jars / f"io.delta_delta-spark_{SCALA_VERSION}-{version('delta-spark')}.jar",
        jars / f"io.delta_delta-storage-{version('delta-spark')}.jar",
    ]
    if not all(p.is_file() for p in wanted):
        return []
    extra = sorted(p for p in jars.glob("org.antlr_antlr4-runtime-*.jar"))  # delta-spark's one runtime dependency
    return [str(p) for p in wanted + extra[-1:]]


def running_on_cluster() -> bool:
    """True under spark-submit (PythonRunner hands us a gateway) or on Databricks: never override their settings."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT") or os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def conf_value(spark: SparkSession, key: str) -> str | None:
    """A Spark setting, or None where it is unset or the compute will not tell (Serverless answers
    CONFIG_NOT_AVAILABLE for most keys)."""
    try:
        return spark.conf.get(key, None)
    except Exception:  # noqa: BLE001 - any refusal means "not known here"
        return None


def parallelism(spark: SparkSession) -> int:
    """Tasks the cluster runs at once, from configuration alone (no SparkContext: works over Spark Connect):
    ``spark.default.parallelism``, else the N of ``local[N]``, else executors × cores, else the shuffle partitions."""
    value = conf_value(spark, "spark.default.parallelism")
    if value:
        return int(value)
    found = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", conf_value(spark, "spark.master") or "")
    if found:
        return (os.cpu_count() or 1) if found.group(1) == "*" else int(found.group(1))
    executors, cores = executor_count(spark), conf_value(spark, "spark.executor.cores")
    if executors and cores:
        return executors * int(cores)
    return int(conf_value(spark, "spark.sql.shuffle.partitions") or 8)


def executor_count(spark: SparkSession) -> int | None:
    """Executors the application asked for: ``spark.executor.instances`` (YARN, Kubernetes, Databricks job
    clusters), else ``spark.cores.max`` ÷ ``spark.executor.cores`` (standalone); None when the conf does not say."""
    instances = conf_value(spark, "spark.executor.instances")
    if instances:
        return int(instances)
    cores_max, cores = conf_value(spark, "spark.cores.max"), conf_value(spark, "spark.executor.cores")
    if cores_max and cores:
        return max(1, int(cores_max) // int(cores))
    return None


def remote_url(settings: Settings) -> str | None:
    """The Spark Connect endpoint to use, if any: ``$SPARK_REMOTE``, else ``spark.remote`` (``--remote``)."""
    return os.environ.get("SPARK_REMOTE") or settings.spark.remote or None


def get_spark(settings: Settings, read_only: bool = False) -> SparkSession:
    """The session a job runs in; see the module docstring for which one. ``read_only`` (``sql``, ``check``): where
    another process holds the local metastore, read the tables from the warehouse folder instead of failing."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    remote = remote_url(settings)
    if remote:
        return connect_session(settings, remote)
    if running_on_cluster():
        return SparkSession.builder.appName(settings.spark.app_name).getOrCreate()
    if not _started and metastore_locked(settings.data_path / "metastore_db"):  # asked before Spark starts
        if not read_only:
            raise locked_error(settings)
        return read_only_session(settings)
    return build_local_session(settings)


def locked_error(settings: Settings) -> MetastoreLockedError:
    return MetastoreLockedError(
        f"the local metastore {settings.data_path / 'metastore_db'} is held by another backforth/Spark "
        "process; wait for it to finish, or point this command at another folder with --set data_dir=..."
    )


def read_only_session(settings: Settings) -> SparkSession:
    """A local session with an in-memory catalog in which every Delta table of the data folder's warehouse is
    registered by its location: how ``sql`` and ``check`` read while a job holds the metastore. Delta's snapshot
    isolation makes the reads consistent; tables created meanwhile by the other process appear on the next call."""
    import tempfile

    from pyspark.sql import SparkSession

    from backforth.tables import quote, register_location

    warehouse = settings.data_path / "warehouse"
    print(
        f"[backforth] another process holds the metastore of {settings.data_path}: reading the tables from "
        f"{warehouse} directly",
        file=sys.stderr,
    )
    conf = local_conf(settings)
    conf.pop("spark.hadoop.javax.jdo.option.ConnectionURL")
    conf["spark.sql.catalogImplementation"] = "in-memory"
    conf["spark.sql.warehouse.dir"] = tempfile.mkdtemp(prefix="backforth-readonly-")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(settings.spark.master).appName(settings.spark.app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    for schema_dir in sorted(warehouse.glob("*.db")):
        schema = quote(schema_dir.name.removesuffix(".db"))
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for table in sorted(p for p in schema_dir.iterdir() if (p / "_delta_log").is_dir()):
            register_location(spark, f"{schema_dir.name.removesuffix('.db')}.{table.name}", table)
    return spark


def connect_session(settings: Settings, remote: str) -> SparkSession:
    """A Spark Connect session: ``databricks`` (Databricks Connect, configured by its own profile or environment),
    ``local[N]`` (a Connect server started in this process with the same Delta and metastore settings as a
    classic local session: how the tests drive every job through the Connect API), else a ``sc://`` URL."""

    from backforth.config import mask_url_secrets

    log.info("Spark Connect session (%s)", mask_url_secrets(remote))
    session = _connect(settings, remote)
    atexit.register(close_at_exit, session)
    return session


def close_at_exit(session: SparkSession) -> None:
    """Close a Connect client before the interpreter tears down. Otherwise a checkpointed DataFrame still alive at
    exit asks the server to drop its cache from ``__del__`` during finalization, where gRPC cannot start its thread
    and the process hangs after its work is done; with the client closed, those calls are skipped."""
    try:
        session.stop()
    except Exception as exc:  # noqa: BLE001 - best effort at exit: the server frees a closed session's state itself
        log.debug("closing the Spark Connect session at exit: %s", exc)


def _connect(settings: Settings, remote: str) -> SparkSession:
    from pyspark.sql import SparkSession

    if remote == "databricks":
        try:
            from databricks.connect import DatabricksSession
        except ImportError:
            raise UserError(
                "--remote databricks needs Databricks Connect in this environment "
                "(pip install 'databricks-connect' matching your cluster's runtime; it provides its own pyspark)"
            ) from None
        return DatabricksSession.builder.getOrCreate()
    if remote.startswith("local"):
        settings.data_path.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.remote(remote).appName(settings.spark.app_name)
        for key, value in local_conf(settings).items():
            builder = builder.config(key, value)
        return start(builder, settings)
    if not remote.startswith("sc://"):
        raise UserError(f"spark.remote: {remote!r} is not a Spark Connect URL (sc://host:port), databricks or local[N]")
    return SparkSession.builder.remote(remote).getOrCreate()


_started: list[bool] = []  # a session was started in this process: its JVM may hold the metastore itself


def metastore_locked(folder: Path) -> bool:
    """Whether another process holds Derby's lock on the metastore in ``folder`` (a POSIX lock on ``dbex.lck``).
    Derby would find out only when the catalog is first used, after ten retries and a few thousand lines of Java
    trace on stderr; this asks the operating system before Spark starts."""
    try:
        import fcntl
    except ImportError:  # Windows: Derby's own error it is
        return False
    try:
        fd = os.open(folder / "dbex.lck", os.O_RDWR)
    except OSError:  # no metastore yet, or not ours to open
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's own lock at once
    return False


def start(builder: Any, settings: Settings) -> SparkSession:
    """``builder.getOrCreate()``, with the local metastore's lock said in one line instead of a Java trace."""
    try:
        session = builder.getOrCreate()
        _started.append(True)
        return session
    except Exception as exc:  # py4j surfaces Derby's lock as a long Java trace; say what it means, without it
        if "another instance of derby" not in str(exc).lower():
            raise
    raise locked_error(settings)  # outside the except block: the Java error is not chained onto it


def local_conf(settings: Settings) -> dict[str, str]:
    """Spark settings for a session backforth starts itself (laptop, CI, tests)."""
    data = settings.data_path
    log4j = Path(__file__).with_name("log4j2.properties")
    conf = {
        **DELTA_CONF,
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(data / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={data / 'metastore_db'};create=true",
        # Local mode runs every task in this one JVM. On few cores G1's concurrent collector threads compete with
        # the task threads; with the throughput collector, dedup of the 50k bench corpus took ~14 % less time on
        # 2 cores (cold 16.2 s → 14.0 s, mean of alternating runs; bench/README.md).
        "spark.driver.extraJavaOptions": (
            f"-Dderby.system.home={data} -Dlog4j.configurationFile=file:{log4j} -XX:+UseParallelGC"
        ),
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.driver.memory": settings.spark.driver_memory,
        "spark.databricks.delta.snapshotPartitions": "2",  # Delta log replay on tiny tables: 50 tasks → 2
        **ui_conf(settings),
        "spark.sql.session.timeZone": "UTC",
        "spark.python.worker.reuse": "true",  # engines are cached per Python worker (see backforth/engines)
        "spark.jars.ivy": str(cache_dir() / "ivy"),
        "spark.redaction.regex": REDACTION_REGEX,
    }
    jars = cached_delta_jars()
    if jars:
        conf["spark.jars"] = ",".join(jars)
    else:
        conf["spark.jars.packages"] = delta_package()
    conf.update(settings.spark.conf)
    return conf


def interactive(setting: bool | None) -> bool:
    """A terminal feature's switch: ``setting`` when given, else whether stderr is a terminal."""
    return setting if setting is not None else sys.stderr.isatty()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the UI's port is chosen here so that its URL can be printed exactly)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ui_conf(settings: Settings) -> dict[str, str]:
    """The Spark UI and the console progress bar: on in a terminal, off elsewhere. In local mode the driver (and so
    the UI) listens on 127.0.0.1 only; with another master (executors must reach the driver) the UI is on only when
    ``spark.ui: true`` asks for it, and then listens where Spark's defaults put it."""
    conf = {"spark.ui.showConsoleProgress": str(interactive(settings.spark.progress)).lower()}
    local = settings.spark.master.startswith("local")
    wanted = interactive(settings.spark.ui) if local else bool(settings.spark.ui)
    if not wanted:
        return {**conf, "spark.ui.enabled": "false"}
    conf.update({"spark.ui.enabled": "true", "spark.ui.port": str(free_port())})
    if local:
        conf.update({"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"})
    return conf


def build_local_session(settings: Settings) -> SparkSession:
    """Start a local Delta-enabled session whose catalog persists in ``settings.data_dir``."""
    from pyspark.sql import SparkSession

    settings.data_path.mkdir(parents=True, exist_ok=True)
    # Python workers must run this interpreter (the virtualenv), not whatever `python3` is first on PATH;
    # SparkContext reads the variable for RDD and UDF workers alike.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(settings.spark.master).appName(settings.spark.app_name)
    conf = local_conf(settings)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = start(builder, settings)
    if conf.get("spark.ui.enabled") == "true":
        host = conf.get("spark.driver.host", "<driver host>")
        print(f"[backforth] Spark UI: http://{host}:{conf['spark.ui.port']}", file=sys.stderr)
    return session


def submit_args(
    profile_spark: dict[str, str] | None = None, archive: str | None = None, offline: bool = False
) -> list[str]:
    """spark-submit arguments that run backforth on a cluster: Delta's package and session settings, the packed
    virtualenv (``archive``, unpacked as ./env on every node and used by every Python worker) and a model profile's
    Spark settings (GPU amounts, worker reuse, Arrow batch size). ``offline`` ships the jars from the local cache
    instead of asking the cluster to resolve the package."""
    jars = cached_delta_jars() if offline else []
    if offline and not jars:
        raise MissingInputError(f"no Delta jars cached in {cache_dir() / 'ivy' / 'jars'}", "setup")
    args = ["--jars", ",".join(jars)] if jars else ["--packages", delta_package()]
    conf = dict(DELTA_CONF)
    if archive:
        args += ["--archives", f"{archive}#env"]
        conf["spark.pyspark.python"] = "./env/bin/python"
    conf.update(profile_spark or {})
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    return args
