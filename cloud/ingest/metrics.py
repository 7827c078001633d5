"""Prometheus counters of the ingest; label values are a small fixed set (never
anything a gateway chose, so a hostile payload cannot blow up cardinality)."""

from prometheus_client import Counter, Histogram

MESSAGES = Counter(
    "mb_ingest_messages_total", "messages handled by the ingest", ["channel", "outcome"]
)  # outcome: stored | duplicate | rejected | applied | ignored
REJECTED = Counter("mb_ingest_rejected_total", "messages dead-lettered, by reason", ["reason"])
SEQ_GAPS = Counter("mb_ingest_seq_gaps_total", "gaps seen in gateways' sequence numbers")
SEQ_FILLED = Counter(
    "mb_ingest_seq_filled_total",
    "sequence numbers stored below a gateway's highest (late, filling a gap)",
)
SEQ_MISSING = Counter("mb_ingest_seq_missing_total", "sequence numbers skipped over by gaps")
ACKS = Counter("mb_ingest_acks_total", "cmd/ack messages published after commits")
BATCH_SECONDS = Histogram(
    "mb_ingest_batch_seconds",
    "time to store and commit one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_RETRIES = Counter("mb_ingest_batch_retries_total", "batches retried after a database error")
ISOLATION_COMMITS = Counter(
    "mb_ingest_isolation_commits_total",
    "transactions spent isolating a failing message in a batch (bisection, and the dead letter)",
)
# labelled by gateway: only registered gateways reach these, so the site bounds the values
UNKNOWN_DEVICE = Counter(
    "mb_ingest_unknown_device_total",
    "items refused because the site does not declare their device on the gateway",
    ["gateway"],
)
EPOCHS = Counter(
    "mb_ingest_epochs_total",
    "new outbox epochs seen (a gateway's outbox was created anew: seq restarts)",
    ["gateway"],
)
SEQ_COLLISIONS = Counter(
    "mb_ingest_seq_collisions_total",
    "items stored although their seq was already stored under another id",
    ["gateway"],
)
DEAD_LETTERS_DROPPED = Counter(
    "mb_ingest_dead_letters_dropped_total",
    "refused messages counted but not kept: over their gateway's dead-letter cap",
    ["reason"],
)  # rows_cap | bytes_cap
DEAD_LETTER_BYTES = Counter(
    "mb_ingest_dead_letter_bytes_total",
    "bytes of dead letters kept (payload sample, reason, topic)",
)
