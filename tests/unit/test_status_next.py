"""`backforth status`'s "next:" line, from lineage rows alone: what the steps reading a step's newest run have left."""

from __future__ import annotations

from datetime import datetime, timedelta

from backforth.status import describe

T0 = datetime(2026, 12, 7, 12, 0)


def run(step: str, minute: int, version: str, status: str = "finished", rows_in: int = 10, rows_out: int = 10,
        reads: tuple[str, str] | None = None) -> dict:  # fmt: skip
    inputs = [{"table": "x", "step": reads[0], "step_version": reads[1], "table_version": 1}] if reads else []
    return {"step": step, "step_version": version, "status": status, "rows_in": rows_in, "rows_out": rows_out,
            "inputs": inputs, "output_table": f"s.{step}", "started_at": T0 + timedelta(minutes=minute),
            "finished_at": T0 + timedelta(minutes=minute + 1), "error": None}  # fmt: skip


ORDER = ["backtranslate", "score", "filter"]


def lines_after(text: str, step: str) -> list[str]:
    out = text.splitlines()
    i = next(k for k, line in enumerate(out) if line.startswith(step + " "))
    return [line.strip() for line in out[i + 1 : i + 3]]


def test_a_run_nobody_read_yet_an_interrupted_consumer_and_a_step_not_run() -> None:
    runs = [run("backtranslate", 0, "bt-a", rows_out=40), run("score", 2, "sc-a", reads=("backtranslate", "bt-a")),
            run("backtranslate", 5, "bt-b", rows_out=44)]  # fmt: skip
    text = describe(runs, [], ORDER)
    assert lines_after(text, "backtranslate")[1] == "next: score has not read this run yet (44 rows)"
    assert lines_after(text, "score")[1] == "next: filter has not run yet"

    runs.append(run("score", 7, "sc-b", status="failed", rows_in=44, rows_out=30, reads=("backtranslate", "bt-b")))
    text = describe(runs, [], ORDER)
    assert lines_after(text, "backtranslate")[1] == "next: score has 14 of 44 rows left (`backforth score` resumes)"

    runs.append(run("score", 9, "sc-b", rows_in=14, rows_out=14, reads=("backtranslate", "bt-b")))
    text = describe(runs, [], ORDER)
    assert not lines_after(text, "backtranslate")[1].startswith("next:")  # read in full: nothing to say
