"""Simulated devices for demos, load tests and drills."""
