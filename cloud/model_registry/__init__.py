"""The model registry: signed model versions and their rollouts to gateways."""
