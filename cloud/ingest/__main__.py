"""Run one ingest worker on its own: ``python -m cloud.ingest`` (settings from MB_CLOUD_*).

Used by drills that SIGKILL the ingest; ``microbrain cloud serve`` runs it in-process.
"""

from __future__ import annotations

import logging
import signal
import threading

from cloud.db import make_engine, session_factory, upgrade
from cloud.ingest.worker import IngestWorker
from cloud.settings import Settings


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    upgrade(settings.database_url)
    worker = IngestWorker(settings, session_factory(make_engine(settings.database_url))).start(
        wait=30
    )
    print("ingest ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    worker.stop()


if __name__ == "__main__":
    main()
