"""The duty console (值班台): server-rendered pages over the services the API uses, live
through one server-sent-event feed per process. zh-CN first; every asset is served from
this package (``static/vendor`` holds htmx and ECharts, vendored by
``scripts/vendor_web_assets.py``)."""

from cloud.console.app import mount_console

__all__ = ["mount_console"]
