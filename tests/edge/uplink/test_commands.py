"""Announcements: one worker plays them from a bounded queue, and only the newest WAV
files stay on disk."""

from __future__ import annotations

import sys
import threading
import time
import wave
from pathlib import Path

from edge.commands import Announcer, CommandHandler
from edge.outbox import Outbox
from microbrain.protocol import Announce, GatewayPath, Reply

GW = GatewayPath("xiyuan", "xiyuan-1", "gw-xiyuan-1")


def wait(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(cond())


def clips(tmp_path: Path) -> Path:
    d = tmp_path / "clips"
    d.mkdir()
    with wave.open(str(d / "no_parking.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return d


def handler(
    tmp_path: Path, player: tuple[str, ...], keep: int = 50, announce_queue: int = 8
) -> tuple[CommandHandler, list[Reply]]:
    replies: list[Reply] = []
    lock = threading.Lock()

    def reply(r: Reply) -> None:
        with lock:
            replies.append(r)

    announcer = Announcer(tmp_path / "out", clips(tmp_path), player, keep=keep)
    return CommandHandler(
        GW, Outbox(tmp_path / "o.db"), reply, announcer, announce_queue=announce_queue
    ), replies


def send(h: CommandHandler, cmd: Announce) -> None:
    h.handle(GW.topic("cmd", "announce"), cmd.to_json())


def test_a_flood_of_announcements_is_queued_on_one_thread_and_the_excess_refused(
    tmp_path: Path,
) -> None:
    gate = (
        tmp_path / "go"
    )  # the player waits for this file: the first announcement holds the speaker
    script = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    player = (sys.executable, "-c", script)
    h, replies = handler(tmp_path, player, announce_queue=3)
    threads = threading.active_count()
    first = Announce(clip="no_parking")
    send(h, first)
    assert wait(h._announcements.empty)  # the worker took it and is playing
    cmds = [Announce(clip="no_parking") for _ in range(10)]
    for cmd in cmds:
        send(h, cmd)
    assert threading.active_count() <= threads + 1  # one worker, not a thread per command
    refused = [r for r in replies if not r.ok]
    assert [r.command_id for r in refused] == [c.id for c in cmds[3:]]
    assert all("busy: 3 announcements are already waiting" in (r.reason or "") for r in refused)
    gate.touch()
    assert wait(lambda: len([r for r in replies if r.ok]) == 4)
    assert [r.command_id for r in replies if r.ok] == [first.id] + [c.id for c in cmds[:3]]


def test_only_the_newest_announcement_files_are_kept(tmp_path: Path) -> None:
    h, replies = handler(tmp_path, (), keep=5)
    cmds = []
    for _ in range(12):
        cmds.append(Announce(clip="no_parking"))
        send(h, cmds[-1])
        assert wait(lambda: len(replies) == len(cmds))  # one at a time: distinct mtimes in order
        time.sleep(0.01)
    assert all(r.ok for r in replies)
    kept = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert kept == sorted(f"announce-{c.id}.wav" for c in cmds[-5:])
