"""The training side: datasets, training, export and evaluation of detectors.

Only this package imports ultralytics and torch (the ``train`` extra); the gateway and
the cloud install and run without them (an import-linter contract in pyproject.toml).
"""
