"""The REST API: thin routes over the services."""

from cloud.api.main import create_api

__all__ = ["create_api"]
