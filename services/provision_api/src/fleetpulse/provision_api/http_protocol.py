"""uvicorn's httptools protocol with a bound on the request line and headers.

httptools (the fast parser uvicorn uses when installed) buffers a request's head whatever its
size, so one 32 MiB header costs 32 MiB before any application code runs. This protocol bounds
the head to uvicorn's ``h11_max_incomplete_event_size`` (the bound h11 would apply) twice over:

- the parsed request line and headers are counted as the parser hands them over;
- the raw bytes read while a head is still incomplete are counted too, because httptools keeps
  a partial header to itself until it ends.

Past the bound it answers 431 (a problem document) and closes the connection, having buffered
at most the bound plus one read.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 64 * 1024


class _HeadTooLargeError(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._head_bytes = 0  # raw bytes of reads that ended inside a head
        self._head_size = 0  # parsed request line and headers
        self._in_head = True
        self._too_large = False

    def on_message_begin(self) -> None:
        self._in_head, self._head_bytes, self._head_size = True, 0, 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # a head over the bound ends here in send_400_response
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                self._refuse_head()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self._max_head:
            self._too_large = True
            raise _HeadTooLargeError  # httptools stops parsing and raises HttpParserCallbackError

    def _refuse_head(self) -> None:
        body = json.dumps(
            {
                "type": "https://fleetpulse.dev/problems/header-too-large",
                "title": "Request Header Fields Too Large",
                "status": 431,
                "detail": f"the request line and headers may be at most {self._max_head} bytes",
            }
        ).encode()
        head = (
            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self._in_head = False
        if not self.transport.is_closing():
            self.transport.write(head.encode() + body)
            self.transport.close()
