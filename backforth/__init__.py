"""backforth: instruction back-and-forth translation on Spark."""

from pathlib import Path

__version__ = "0.1.0"

# jobs/ and udfs/ sit beside this package in a checkout and install as backforth.jobs and backforth.udfs (see
# pyproject.toml). Where this package is imported straight from a checkout (PYTHONPATH, a git worktree, a bench
# script), the checkout's root joins the package path so those two names resolve to the same files there too.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "jobs" / "__init__.py").is_file() and (_checkout / "pyproject.toml").is_file():
    __path__.append(str(_checkout))
