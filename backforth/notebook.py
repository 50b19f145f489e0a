"""What the notebooks in ``notebooks/`` share: a Spark session and the tables' names, on Databricks or locally.

On Databricks the notebook's widgets pick the environment, catalog and schema; elsewhere the same notebook file runs
with ``python notebooks/explore/funnel.py [--env local] [--set k=v ...]`` (or under ``spark-submit``) against the
local warehouse. Results show with ``display`` there and as text tables here; figures are saved as PNG files here.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backforth.config import Settings, load_settings


@dataclass
class Notebook:
    spark: Any
    settings: Settings
    dbutils: Any = None
    display: Any = None

    def table(self, name: str) -> str:
        """The table's full name (catalog.schema.name in Unity Catalog, schema.name locally)."""
        from backforth.tables import qualify

        return qualify(self.settings, name)

    def exists(self, *names: str) -> bool:
        """True when every table exists; otherwise says which step has not run yet."""
        missing = [n for n in names if not self.spark.catalog.tableExists(self.table(n))]
        if missing:
            print(f"(no table {', '.join(missing)} yet: run the step that writes it first)")
        return not missing

    def version(self, step: str) -> str | None:
        """The step version of the newest finished run of ``step`` (from ``step_runs``), or None."""
        from backforth import lineage

        run = lineage.newest(self.spark, self.settings, [step])
        return run.step_version if run else None

    def sql(self, query: str):
        """Run ``query`` with ``{table}`` placeholders replaced by full, quoted table names."""
        from backforth.tables import quote

        return self.spark.sql(re.sub(r"\{(\w+)\}", lambda m: quote(self.table(m.group(1))), query))

    def show(self, df, n: int = 50) -> None:
        if self.display is not None:
            self.display(df)
        else:
            df.show(n=n, truncate=100, vertical=False)

    def figure(self, fig, name: str) -> Path | None:
        """``display`` on Databricks; a PNG under <data_dir>/notebooks/ here (its path is printed)."""
        if self.display is not None:
            self.display(fig)
            return None
        folder = self.settings.data_path / "notebooks"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        print(f"figure: {path}")
        return path


def open_notebook(namespace: dict[str, Any], argv: list[str] | None = None) -> Notebook:
    """Call as ``nb = open_notebook(globals())``: Databricks widgets when the runtime defines ``dbutils``, else
    command-line flags."""
    from backforth.spark import get_spark

    dbutils = namespace.get("dbutils")
    if dbutils is not None:
        dbutils.widgets.dropdown("env", "dev", ["dev", "prod", "local"], "env")
        dbutils.widgets.text("catalog", "", "catalog (empty = the env's)")
        dbutils.widgets.text("schema", "", "schema (empty = the env's)")
        env = dbutils.widgets.get("env")
        overrides = [f"tables.{k}={dbutils.widgets.get(k)}" for k in ("catalog", "schema") if dbutils.widgets.get(k)]
    else:
        parser = argparse.ArgumentParser(description="a backforth notebook, run outside Databricks")
        parser.add_argument("--env", default="local")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        env, overrides = args.env, args.overrides
    settings = load_settings(None, None, env, overrides, None)
    return Notebook(get_spark(settings), settings, dbutils, namespace.get("display") if dbutils is not None else None)
