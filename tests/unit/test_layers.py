"""The layers hold: the core imports neither jobs/ nor udfs/, udfs/ does no table I/O, no job imports another job.

Read from the source with ``ast`` (every import statement, also those inside functions), so a break fails here
before anyone has to find it by reading.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names), wherever the statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def layer(module: str) -> str | None:
    """``backforth.jobs.score`` → ``jobs``, ``backforth.udfs.llm`` → ``udfs``; the core and others → None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "backforth" and len(parts) > 1 and parts[1] in ("jobs", "udfs") else None


def job_of(module: str) -> str | None:
    """``backforth.jobs.report.aggregate`` → ``report``; ``backforth.jobs`` → None."""
    parts = module.split(".")
    return parts[2] if layer(module) == "jobs" and len(parts) > 2 else None


def module_name(path: Path) -> str:
    """``jobs/score.py`` → ``backforth.jobs.score`` (jobs/ and udfs/ install under the backforth namespace)."""
    return "backforth." + ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_the_core_imports_neither_jobs_nor_udfs() -> None:
    breaks = [(p.relative_to(ROOT), m) for p in modules("backforth") for m in imports(p)
              if layer(m) is not None]  # fmt: skip
    assert breaks == []


def test_udfs_do_no_table_io() -> None:
    io_calls = ("saveAsTable", "writeTo", ".table(", "spark.sql(", "insertInto", "DeltaTable", "mlflow")
    breaks = [(p.relative_to(ROOT), c) for p in modules("udfs") for c in io_calls
              if c in p.read_text(encoding="utf-8")]  # fmt: skip
    assert breaks == []
    assert all("jobs" not in {layer(m) for m in imports(p)} for p in modules("udfs"))


def test_no_job_imports_another_job() -> None:
    breaks = []
    for path in modules("jobs"):
        own = job_of(module_name(path))
        for m in imports(path):
            other = job_of(m)
            if other is not None and other != own:
                breaks.append((path.relative_to(ROOT), m))
    assert breaks == []


def test_the_checker_catches_a_break(tmp_path: Path) -> None:
    """The rules above are not vacuous: an import of another job or of udfs from the core is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from backforth.jobs.score import ScoreConfig\n    import backforth.udfs.llm\n")
    assert imports(bad) == {"backforth.jobs.score", "backforth.udfs.llm"}
    assert {layer(m) for m in imports(bad)} == {"jobs", "udfs"} and layer("backforth.tables") is None
    assert job_of("backforth.jobs.score") == "score" and job_of("backforth.jobs.report.aggregate") == "report"
    assert job_of("backforth.jobs") is None and job_of(module_name(ROOT / "jobs" / "report" / "page.py")) == "report"
    assert len(modules("jobs")) > 5 and len(modules("backforth")) > 10


def test_no_module_of_the_package_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for pkg in ("backforth", "jobs", "udfs") for p in modules(pkg)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}  # fmt: skip
    assert long == {}


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports test files by basename (rootdir-relative, no packages): two ``test_x.py`` break collection."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
