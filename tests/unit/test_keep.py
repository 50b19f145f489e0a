"""keep(): a local checkpoint, and scratch tables from the first refusal on (no Spark: stand-ins record the calls)."""

from __future__ import annotations

import pytest

from backforth import keep


class Writer:
    def __init__(self, log: list) -> None:
        self.log = log

    def format(self, _: str) -> Writer:
        return self

    def mode(self, _: str) -> Writer:
        return self

    def saveAsTable(self, name: str) -> None:  # noqa: N802 - Spark's name
        self.log.append(("write", name))


class Session:
    def __init__(self, log: list) -> None:
        self.log = log

    def table(self, name: str) -> tuple:
        return ("table", name)

    def sql(self, text: str) -> None:
        self.log.append(("sql", text))


class Frame:
    def __init__(self, refusal: str | None, log: list) -> None:
        self.refusal, self.log = refusal, log
        self.sparkSession, self.write = Session(log), Writer(log)

    def localCheckpoint(self) -> str:  # noqa: N802 - Spark's name
        self.log.append(("checkpoint",))
        if self.refusal:
            raise RuntimeError(self.refusal)
        return "checkpointed"


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keep, "STATE", keep.State())


def test_auto_checkpoints_until_the_compute_refuses_then_writes_scratch_tables() -> None:
    log: list = []
    keep.configure("auto", "main.bf")
    assert keep.keep(Frame(None, log)) == "checkpointed"
    refused = "[NOT_SUPPORTED_WITH_SERVERLESS] PERSIST TABLE is not supported on serverless compute."
    kept = keep.keep(Frame(refused, log))
    assert kept[0] == "table" and kept[1].startswith("`main`.`bf`.`_backforth_scratch_")
    keep.configure("auto", "main.bf")  # the next job of the process goes straight to tables
    keep.keep(Frame(refused, log))
    assert [e[0] for e in log] == ["checkpoint", "checkpoint", "write", "write"]
    assert len(keep.drop_scratch(Session(log))) == 2 and log[-1][0] == "sql" and "DROP TABLE" in log[-1][1]


def test_other_errors_and_local_mode_raise() -> None:
    keep.configure("auto", "bf")
    with pytest.raises(RuntimeError, match="disk full"):
        keep.keep(Frame("disk full", []))
    keep.configure("local", "bf")
    with pytest.raises(RuntimeError, match="SERVERLESS"):
        keep.keep(Frame("NOT_SUPPORTED_WITH_SERVERLESS", []))
    keep.configure("table", "bf")
    log: list = []
    keep.keep(Frame(None, log))
    assert [e[0] for e in log] == ["write"]  # table mode never tries a checkpoint
    with pytest.raises(Exception, match="spark.checkpoint"):
        keep.configure("sometimes", None)


class Kept:
    def __init__(self, log: list) -> None:
        self.sparkSession = Session(log)


class SameObjectSession(Session):
    """Returns one object for every table, as Python may once a kept DataFrame is collected and its id reused."""

    def table(self, name: str) -> object:
        return self.shared


def test_a_reused_object_id_does_not_make_a_scratch_table_forgotten() -> None:
    log: list = []
    SameObjectSession.shared = Kept(log)
    keep.configure("table", "bf")
    frames = [Frame(None, log) for _ in range(3)]
    for f in frames:
        f.sparkSession = SameObjectSession(log)
        keep.keep(f)
    written = [name for kind, name in log if kind == "write"]
    assert len(set(written)) == 3
    keep.release(SameObjectSession.shared)  # the live one: its table is dropped now
    dropped_now = [e[1] for e in log if e[0] == "sql"]
    assert len(dropped_now) == 1 and written[-1] in dropped_now[0]
    left = keep.drop_scratch(Session(log))
    assert sorted(left) == sorted(written[:2])  # the two whose mapping was overwritten are still dropped
