"""A paho client that reads its socket in large chunks.

paho reads every packet with three ``recv`` calls at least (the command byte, the
length byte(s), the rest), and each call releases the GIL. In a process whose other
thread is busy (the cloud's ingest writer, the gateway's outbox pump) the network
thread then waits for the GIL again after every one of them (up to the switch interval,
5 ms), so it falls behind: the profile of the ingest showed four ``recv`` per message
and the writer starving the reader. Here one ``recv`` takes up to 64 KiB, and the
packets already buffered are handled without giving up the GIL.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

READ_CHUNK = 65_536


class BufferedClient(mqtt.Client):
    """``paho.mqtt.client.Client`` with a read buffer in front of its socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rbuf_sock: object = None  # the socket the buffered bytes came from

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rbuf_sock is not self._sock:
            # a new connection: bytes left from the old one must not be read as its own
            self._rbuf, self._rpos, self._rbuf_sock = b"", 0, self._sock
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(READ_CHUNK)  # BlockingIOError when there is nothing
            if len(data) <= bufsize:
                return data  # b"": the broker closed the connection
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    @property
    def _buffered(self) -> bool:
        return self._rbuf_sock is self._sock and self._rpos < len(self._rbuf)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's ``loop_read``, going on while packets wait in the buffer: select() does
        not see them, so stopping here would leave them until the next byte arrives."""
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self._buffered:
            rc = super().loop_read(1)
        return rc
