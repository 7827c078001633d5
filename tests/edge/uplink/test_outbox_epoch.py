"""The outbox's epoch: made with the file, stamped on every item and status, and acks of
another epoch never delete anything (issue 9, item 1)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from prometheus_client import REGISTRY

from edge.commands import CommandHandler
from edge.outbox import Outbox
from microbrain.protocol import Ack, GatewayPath, Reading, Reply, decode

GW = GatewayPath("c1", "k1", "gw1")


def reading(n: int = 0) -> Reading:
    return Reading(sensor="h1", kind="hydrant_pressure", values={"n": n})


def _foreign_acks() -> float:
    return REGISTRY.get_sample_value("mb_edge_outbox_foreign_acks_total") or 0.0


def _reading(raw: bytes) -> Reading:
    item = decode(GW.topic("reading"), raw).payload
    assert isinstance(item, Reading)
    return item


def test_a_new_file_has_its_own_epoch_stamped_on_every_item(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    assert re.fullmatch(r"[0-9a-f]{16}", box.epoch)
    stamped = box.append_many([reading(n) for n in range(3)])
    assert {p.epoch for p in stamped} == {box.epoch}
    wire = [_reading(i.payload) for i in box.after(0)]
    assert [(r.seq, r.epoch) for r in wire] == [(1, box.epoch), (2, box.epoch), (3, box.epoch)]
    first = box.epoch
    box.close()
    assert Outbox(path).epoch == first  # the same file keeps its epoch
    path.unlink()
    reset = Outbox(path)  # a wiped data folder: seq restarts, under a new epoch
    assert reset.epoch != first and reset.append(reading()).seq == 1


def test_acks_of_another_epoch_or_without_one_delete_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append_many([reading(n) for n in range(5)])
    before = _foreign_acks()
    assert box.ack([(1, 5)], "0123456789abcdef") == 0  # meant for an outbox since deleted
    assert _foreign_acks() == before + 1
    assert box.ack([(1, 5)]) == 0  # no epoch: only items written before the file had one
    assert box.depth == 5
    assert box.ack([(2, 3)], box.epoch) == 2
    assert [i.seq for i in box.after(0)] == [1, 4, 5]


def test_the_ack_command_carries_the_epoch_to_the_outbox(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append_many([reading(n) for n in range(4)])
    replies: list[Reply] = []
    handler = CommandHandler(GW, box, replies.append)
    handler.handle(
        GW.topic("cmd", "ack"), Ack(ranges=((1, 4),), epoch="fedcba9876543210").to_json()
    )
    assert box.depth == 4
    handler.handle(GW.topic("cmd", "ack"), Ack(ranges=((1, 2),), epoch=box.epoch).to_json())
    assert [i.seq for i in box.after(0)] == [3, 4] and replies == []


def test_a_file_from_before_epochs_gets_one_and_its_old_items_stay_ackable(tmp_path: Path) -> None:
    # an outbox written by an older gateway: the same tables, no epoch, items without one
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE items (seq INTEGER PRIMARY KEY, channel TEXT NOT NULL,
                            priority INTEGER NOT NULL, created REAL NOT NULL,
                            payload BLOB NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('last_seq', 3);""")
    for seq in (2, 3):
        old = reading(seq).model_copy(update={"seq": seq})
        db.execute("INSERT INTO items VALUES (?, 'reading', 0, 0, ?)", (seq, old.to_json()))
    db.commit()
    db.close()
    box = Outbox(path)
    assert [json.loads(i.payload).get("epoch") for i in box.after(0)] == [None, None]
    new = box.append(reading(4))
    assert (new.seq, new.epoch) == (4, box.epoch)
    # the cloud acks the old items without an epoch (they carried none): only they go
    assert box.ack([(1, 10)]) == 2
    assert [i.seq for i in box.after(0)] == [4]
    box.close()
    again = Outbox(path)
    assert again.ack([(1, 10)]) == 0 and again.ack([(4, 4)], again.epoch) == 1
