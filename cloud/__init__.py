"""The central service: ingest, storage, alerts, escalation, work orders and the API."""
