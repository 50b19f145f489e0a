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


def job_of(module: str) -> str | None:
    """``jobs.report.aggregate`` → ``report``; ``jobs`` → None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "jobs" and len(parts) > 1 else None


def test_the_core_imports_neither_jobs_nor_udfs() -> None:
    breaks = [(p.relative_to(ROOT), m) for p in modules("backforth") for m in imports(p)
              if m.split(".")[0] in ("jobs", "udfs")]  # fmt: skip
    assert breaks == []


def test_udfs_do_no_table_io() -> None:
    io_calls = ("saveAsTable", "writeTo", ".table(", "spark.sql(", "insertInto", "DeltaTable", "mlflow")
    breaks = [(p.relative_to(ROOT), c) for p in modules("udfs") for c in io_calls
              if c in p.read_text(encoding="utf-8")]  # fmt: skip
    assert breaks == []
    assert all("jobs" not in {m.split(".")[0] for m in imports(p)} for p in modules("udfs"))


def test_no_job_imports_another_job() -> None:
    breaks = []
    for path in modules("jobs"):
        own = job_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for m in imports(path):
            other = job_of(m)
            if other is not None and other != own:
                breaks.append((path.relative_to(ROOT), m))
    assert breaks == []


def test_the_checker_catches_a_break(tmp_path: Path) -> None:
    """The rules above are not vacuous: an import of another job or of udfs from the core is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from jobs.score import ScoreConfig\n    import udfs.llm\n", encoding="utf-8")
    assert imports(bad) == {"jobs.score", "udfs.llm"}
    assert job_of("jobs.score") == "score" and job_of("jobs.report.aggregate") == "report" and job_of("jobs") is None
    assert len(modules("jobs")) > 5 and len(modules("backforth")) > 10


def test_no_module_of_the_package_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for pkg in ("backforth", "jobs", "udfs") for p in modules(pkg)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}  # fmt: skip
    assert long == {}
