"""A child process that appends to an outbox as fast as it can and prints each seq
once append() has returned; the test SIGKILLs it and checks nothing printed was lost."""

from __future__ import annotations

import sys

from edge.outbox import Outbox
from microbrain.protocol import Event, Reading, Severity


def main(path: str) -> None:
    box = Outbox(path)
    n = 0
    while True:
        n += 1
        item = (
            Event(kind="smoke_alarm", source="s1", severity=Severity.CRITICAL)
            if n % 10 == 0
            else Reading(sensor="s1", kind="smoke", values={"n": n})
        )
        stamped = box.append(item)
        sys.stdout.write(f"{stamped.seq} {stamped.id}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
