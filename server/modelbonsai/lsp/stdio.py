"""A forgiving JSON-RPC reader loop for stdio (replaces pygls' strict one).

pygls only recognises a header line that is exactly ``Content-Length: N\\r\\n``; after stray bytes
without a newline, the next real header is glued to them and that message is lost. Here a
``Content-Length`` anywhere in a header line counts, the last one before the blank line wins,
absurd lengths are refused, and every frame that fails to decode is reported (the server answers
with a JSON-RPC parse error) while the loop goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pygls.exceptions import JsonRpcException

log = logging.getLogger(__name__)

_HEADER = re.compile(rb"content-length:\s*(\d{1,12})", re.IGNORECASE)
#: Larger frames are never sent by a sane client; read and discard them rather than buffer them.
MAX_FRAME_BYTES = 256 * 1024 * 1024
_DISCARD_CHUNK = 1 << 20


class AsyncReader(Protocol):
    def readline(self) -> Awaitable[bytes]: ...

    def readexactly(self, n: int) -> Awaitable[bytes]: ...


class FrameTooLarge(ValueError):
    pass


async def read_loop(
    stop_event: threading.Event,
    reader: AsyncReader,
    protocol: Any,
    on_error: Callable[[Exception, type], Any],
) -> None:
    length: int | None = None
    while not stop_event.is_set():
        line = await reader.readline()
        if not line:
            break  # EOF: the client is gone
        match = _HEADER.search(line)
        if match:
            length = int(match.group(1))
            continue
        if line.strip() or length is None:
            continue  # another header (Content-Type), or junk between frames
        n, length = length, None
        if n > MAX_FRAME_BYTES:
            if not await _discard(reader, n):
                break
            on_error(
                FrameTooLarge(f"a frame of {n} bytes is larger than {MAX_FRAME_BYTES}"), JsonRpcException
            )
            continue
        body = await reader.readexactly(n) if n else b""
        if len(body) < n:
            break
        try:
            message = json.loads(body, object_hook=protocol.structure_message)
            protocol.handle_message(message)
        except Exception as exc:  # one bad frame must not stop the server
            log.debug("bad frame", exc_info=True)
            on_error(exc, JsonRpcException)


async def _discard(reader: AsyncReader, n: int) -> bool:
    while n > 0:
        chunk = await reader.readexactly(min(n, _DISCARD_CHUNK))
        if not chunk:
            return False
        n -= len(chunk)
    return True


def run(
    stop_event: threading.Event,
    reader: AsyncReader,
    protocol: Any,
    on_error: Callable[[Exception, type], Any],
) -> None:
    asyncio.run(read_loop(stop_event, reader, protocol, on_error))
