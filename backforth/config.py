"""Typed configuration: YAML layers merged with ``--set`` overrides into dataclasses.

Layers, later wins: ``conf/base.yaml`` → ``conf/jobs/<job>.yaml`` (its keys live under ``job``) →
``conf/env/<env>.yaml`` (whose ``jobs.<job>`` section tunes that job per environment) → ``--set a.b=c``.
Every leaf remembers the layer it came from, so an unknown key, a wrong type or a missing required value fails
before Spark starts with a message that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from backforth.errors import ConfigError  # the one class; `from backforth.config import ConfigError` still works
from backforth.hashing import fingerprint
from backforth.masking import is_secret_key, mask_url_secrets, redact  # noqa: F401 - importable from here too


@dataclass
class SparkConfig:
    """Settings for the Spark session backforth creates itself (never applied to an existing session)."""

    master: str = "local[2,3]"  # local[cores,attempts]: without ",3" local mode never retries a failed task
    app_name: str = "backforth"
    shuffle_partitions: int = 4  # tiny local inputs: 200 default partitions would be mostly empty tasks
    driver_memory: str = "4g"  # local mode runs every task in the driver JVM; 1g (Spark's default) is tight
    conf: dict[str, str] = field(default_factory=dict)  # extra spark.* settings for local sessions only
    # Spark Connect: "sc://host:port/;token=…" (a Connect server), "databricks" (Databricks Connect, from its
    # config profile), "local[N]" (a Connect server backforth starts in-process, with Delta). SPARK_REMOTE wins.
    remote: str | None = None
    # Intermediate results: auto (local checkpoints; scratch Delta tables where the compute refuses them, as
    # Databricks Serverless does), local, or table. See backforth/keep.py.
    checkpoint: str = "auto"
    # Local sessions in a terminal: the Spark UI on 127.0.0.1 (its URL printed) and Spark's console progress bar.
    # null = on when stderr is a terminal, off otherwise (CI, logs, tests); true / false force either way.
    ui: bool | None = None
    progress: bool | None = None


@dataclass
class TablesConfig:
    """Where tables live: a Unity Catalog ``catalog`` on Databricks, the local metastore otherwise."""

    catalog: str | None = None
    schema: str = "backforth"


@dataclass
class MlflowConfig:
    """Tracking: ``tracking_uri`` null means a SQLite store in the data folder; MLFLOW_TRACKING_URI wins over both."""

    tracking_uri: str | None = None
    experiment: str = "backforth"
    registry_uri: str | None = None  # model registry; null = MLflow's default (the tracking store); databricks-uc
    # A SQLite store on a cluster's driver is lost with the driver: refused there unless this is true.
    allow_local_store: bool = False


@dataclass
class Settings:
    """Everything one job invocation needs. ``job`` holds the job's own dataclass."""

    env: str = "local"
    data_dir: str = ".backforth"  # warehouse, metastore, MLflow store; relative paths resolve from the CWD
    spark: SparkConfig = field(default_factory=SparkConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    job: Any = None

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()


def at_least(low: float, default: Any = None) -> Any:
    """A dataclass field whose value, when set, must be ``low`` or more (checked when the config is built, the file
    and key named): ``shard_rows: int | None = at_least(1)``."""
    return field(default=default, metadata={"min": low})


# ---------------------------------------------------------------------------------------------------------------
# Loading and merging


def default_conf_dir() -> Path:
    """``./conf`` when run from a checkout, else the copy shipped in the wheel (``backforth/conf``) or the repo's."""
    here = Path(__file__).resolve().parent
    for candidate in (Path.cwd() / "conf", here / "conf", here.parent / "conf"):
        if (candidate / "base.yaml").is_file():
            return candidate
    raise ConfigError("no conf/base.yaml found: run from the project folder or pass --conf-dir")


def conf_folder(conf_dir: Path | str | None) -> Path:
    """The config folder ``--conf-dir`` names (which must exist), else :func:`default_conf_dir`."""
    if not conf_dir:
        return default_conf_dir()
    if not Path(conf_dir).is_dir():
        raise ConfigError(f"--conf-dir {conf_dir}: no such folder (it holds base.yaml, env/, jobs/ and models/)")
    return Path(conf_dir)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read one YAML layer; an empty file is an empty layer."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:  # e.g. a --conf-dir with env/ but no base.yaml
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    except yaml.YAMLError as exc:  # one line: where, and what the parser expected (its own text spans lines)
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def merge_layer(base: dict, layer: Mapping, origin: dict[str, str], source: str, prefix: str = "") -> None:
    """Deep-merge ``layer`` into ``base`` in place, recording ``source`` for every key it sets."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_layer(base[key], value, origin, source, dotted + ".")
        else:
            base[key] = json.loads(json.dumps(value, default=str)) if isinstance(value, (dict, list)) else value
        origin[dotted] = source


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=c`` → (``a.b``, YAML-typed ``c``). ``--set job.limit=10`` gives an int, ``x=[a, b]`` a list."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set job.max_files=10")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


# mappings whose keys contain dots themselves: --set spark.conf.spark.hadoop.fs.s3a.endpoint=x sets one key of them
FLAT_MAPPINGS = ("spark.conf",)


def nest(dotted: str, value: Any) -> dict:
    """``("a.b", 1)`` → ``{"a": {"b": 1}}``; ``("spark.conf.spark.x.y", 1)`` → ``{"spark": {"conf": {"spark.x.y":
    1}}}``."""
    out: Any = value
    parts = dotted.split(".")
    for flat in FLAT_MAPPINGS:
        if dotted.startswith(flat + ".") and len(dotted) > len(flat) + 1:
            parts = [*flat.split("."), dotted[len(flat) + 1 :]]
    for part in reversed(parts):
        out = {part: out}
    return out


def load_settings(
    job: str | None,
    job_cls: type | None,
    env: str = "local",
    overrides: Iterable[str] = (),
    conf_dir: Path | None = None,
) -> Settings:
    """Merge the layers for ``job`` in ``env`` and build a validated :class:`Settings`."""
    conf_dir = conf_folder(conf_dir)
    raw: dict[str, Any] = {"env": env}
    origin: dict[str, str] = {"env": "--env"}
    env_file = conf_dir / "env" / f"{env}.yaml"
    if not env_file.is_file():
        known = sorted(p.stem for p in (conf_dir / "env").glob("*.yaml"))
        raise ConfigError(f"--env {env}: no {env_file} (known environments: {', '.join(known) or 'none'})")
    merge_layer(raw, read_yaml(conf_dir / "base.yaml"), origin, str(conf_dir / "base.yaml"))
    job_file = conf_dir / "jobs" / f"{job}.yaml"
    if job and job_file.is_file():
        merge_layer(raw, {"job": read_yaml(job_file)}, origin, str(job_file))
    env_layer = read_yaml(env_file)
    jobs_section = env_layer.pop("jobs", None) or {}
    merge_layer(raw, env_layer, origin, str(env_file))
    if job and job in jobs_section:  # an env file may tune one job: jobs: {ingest: {...}}
        merge_layer(raw, {"job": jobs_section[job]}, origin, str(env_file))
    for text in overrides:
        key, value = parse_override(text)
        merge_layer(raw, nest(key, value), origin, "--set")
    if job_cls is None:
        raw.pop("job", None)
    elif "job" not in raw:
        raw["job"] = {}
    settings = build(Settings, raw, origin, "", {"job": job_cls} if job_cls else {})
    if not settings.data_dir.strip():  # "" would put the warehouse and the metastore in the working directory
        raise ConfigError(f"{_where(origin, 'data_dir')}: data_dir is empty: name a folder (default .backforth)")
    return settings


# ---------------------------------------------------------------------------------------------------------------
# Typed construction


def _where(origin: dict[str, str], key: str) -> str:
    """The layer that set ``key`` or its nearest parent."""
    probe = key
    while probe:
        if probe in origin:
            return origin[probe]
        probe = probe.rpartition(".")[0]
    return "defaults"


def build(cls: type, data: Any, origin: dict[str, str], prefix: str, special: dict[str, type] | None = None) -> Any:
    """Build dataclass ``cls`` from ``data``; ``special`` swaps the declared type of some top-level fields."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(origin, prefix.rstrip('.'))}: {prefix.rstrip('.')}: expected a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            dotted = f"{prefix}{key}"
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(fields)})"
            raise ConfigError(f"{_where(origin, dotted)}: unknown key '{dotted}'{hint}")
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{prefix}{name}"
        tp = (special or {}).get(name, hints[name])
        if name in data:
            kwargs[name] = value = coerce(tp, data[name], origin, dotted)
            low = f.metadata.get("min")
            if low is not None and value is not None and value < low:
                raise ConfigError(f"{_where(origin, dotted)}: {dotted}: {value!r} is less than {low}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(
                f"{_where(origin, prefix.rstrip('.')) if prefix else 'config'}: missing required value '{dotted}' "
                f"(set it in the YAML or with --set {dotted}=...)"
            )
    return cls(**kwargs)


def coerce(tp: Any, value: Any, origin: dict[str, str], key: str) -> Any:
    """Check and convert one value to type ``tp``; ints are accepted where floats are expected."""
    where = _where(origin, key)
    orig = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if orig in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, value, origin, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{where}: {key}: unsupported value")
    if orig is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {key}: {shown(key, value)} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, origin, key + ".")
    if orig in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key}: expected a list, got {type(value).__name__} {shown(key, value)}")
        return [coerce(args[0] if args else Any, v, origin, f"{key}[{i}]") for i, v in enumerate(value)]
    if orig is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key}: expected a mapping, got {type(value).__name__}")
        if args and args[1] is str:  # Spark/Hadoop settings: YAML reads `true` as a bool, Spark wants the text
            value = {k: str(v).lower() if isinstance(v, bool) else v for k, v in value.items()}
        return {str(k): coerce(args[1] if args else Any, v, origin, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads "2024" as int; a string field still means the text
    else:
        raise ConfigError(f"{where}: {key}: unsupported field type {tp!r}")
    raise ConfigError(f"{where}: {key}: expected {tp.__name__}, got {type(value).__name__} {shown(key, value)}")


# ---------------------------------------------------------------------------------------------------------------
# Views of a resolved config


def to_dict(settings: Settings) -> dict[str, Any]:
    """The resolved config as plain data, secrets masked."""
    return redact(dataclasses.asdict(settings))


def shown(key: str, value: Any) -> str:
    """``value`` of ``key`` as a message may quote it: masked where it is or holds a secret."""
    return repr(redact(value, key))


def config_hash(settings: Settings) -> str:
    """A short fingerprint of what the job will do: the job section and table location, not the environment."""
    payload = {"job": dataclasses.asdict(settings.job) if settings.job else None, "tables": settings.tables}
    return fingerprint(payload, n=12)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists become JSON strings."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(data) if isinstance(data, list) else data
    return out


def dump_yaml(settings: Settings) -> str:
    """The resolved config as YAML, for ``--dry-run`` and the MLflow artifact."""
    return yaml.safe_dump(to_dict(settings), sort_keys=False, default_flow_style=False)
