"""Scenario files for `microbrain model eval` (see models/event_scores.py)."""
