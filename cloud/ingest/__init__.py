"""MQTT ingest: decode, check, dedupe, store in batches, acknowledge after commit."""

from cloud.ingest.store import BatchResult, Incoming, store_batch
from cloud.ingest.worker import IngestWorker

__all__ = ["BatchResult", "Incoming", "IngestWorker", "store_batch"]
