"""A gateway process for the SIGKILL drill: ``append`` streams events into the outbox
and uplink, printing each seq once appended; ``drain`` only forwards what is stored and
prints ``empty`` once the store has acknowledged everything."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from microbrain.protocol import GatewayPath
from tests.edge.uplink.gateway_rig import event, make_rig


def main(db: str, port: str, community: str, compound: str, gateway: str, mode: str) -> None:
    rig = make_rig(GatewayPath(community, compound, gateway), Path(db), int(port))
    rig.uplink.start()
    if mode == "append":
        n = 0
        while True:
            stamped = rig.outbox.append(event(n))
            sys.stdout.write(f"{stamped.seq} {stamped.id}\n")
            sys.stdout.flush()
            n += 1
            time.sleep(0.002)
    while rig.outbox.depth:
        time.sleep(0.05)
    print("empty", flush=True)
    time.sleep(60)


if __name__ == "__main__":
    main(*sys.argv[1:7])
