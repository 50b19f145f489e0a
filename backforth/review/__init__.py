"""``backforth review``: a local web app to read, compare and label generated pairs (see backforth.review.app)."""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any

from backforth.errors import UserError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(settings: Any, host: str = "127.0.0.1", port: int = 8765, reviewer: str | None = None) -> None:
    """Serve the app for the local tables of ``settings`` until interrupted; prints the URL first."""
    from backforth.review.app import create_app
    from backforth.review.store import Store
    from backforth.status import local_schema_dir

    folder = local_schema_dir(settings)
    if folder is None:
        raise UserError("backforth review reads the data folder's local Delta tables; tables in Unity Catalog or "
                        "behind a Spark Connect endpoint are not supported yet")  # fmt: skip
    if not (folder / "responses" / "_delta_log").is_dir():
        raise UserError(f"no responses in {folder} yet: run the pipeline (`make demo` or `backforth pipeline`) first")
    if host not in LOOPBACK:
        print(f"[backforth] review: serving on {host}, reachable from other machines; anyone who can reach it can "
              "label pairs", file=sys.stderr)  # fmt: skip
    try:
        name = reviewer or os.environ.get("BACKFORTH_REVIEWER") or getpass.getuser()
    except (KeyError, OSError):
        name = "reviewer"
    import uvicorn

    named = ["127.0.0.1", "localhost"]  # on loopback, answer only to these names (no DNS rebinding)
    app = create_app(Store(folder), name, hosts=named if host in named else None)
    shown = f"[{host}]" if ":" in host else host
    print(f"backforth review: http://{shown}:{port}/  (tables in {folder}; Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
