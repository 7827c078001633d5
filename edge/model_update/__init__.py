"""The gateway's model manager: takes a model the cloud's registry signed (``cmd/model``),
downloads, verifies, smoke-tests and swaps it in, and remembers what it trusted.

- :mod:`edge.model_update.trust` — the persisted trust state (highest serial, the
  installed and the previous model), TUF-style: written before a new model runs;
- :mod:`edge.model_update.download` — a resumable, retried, size-bounded HTTP download;
- :mod:`edge.model_update.install` — :class:`ModelManager`, the orchestration.
"""
