"""A TCP proxy that can stall or cut the network between clients and one upstream host:port.

It runs its own event loop in a thread, so it keeps forwarding whatever the test does meanwhile
(a blocking ``subprocess.run``, a ``time.sleep``) and serves service processes and the test's own
connections alike. Every method is thread-safe and synchronous.

- ``pause()``: a network stall. Nothing is forwarded in either direction; connections stay open
  (nothing is closed or reset) and the bytes are held, not dropped. New connections are accepted
  but not connected upstream until ``resume()``.
- ``resume()``: forwards what was held, in order, then flows again.
- ``sever()``: closes every connection at once, as a load balancer dropping them would; new
  connections are accepted as before.

Counters: ``bytes_up`` (client to upstream), ``bytes_down``, ``connections_total``,
``connections_open``, ``connections_severed``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import TypeVar

CHUNK = 64 * 1024
T = TypeVar("T")


class _Link:
    """One client connection and its upstream connection (once made)."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.dead = asyncio.Event()

    def abort(self) -> None:
        self.dead.set()
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.port = listen_port
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections_total = 0
        self.connections_severed = 0
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> TcpProxy:
        """Listen (on ``listen_port``, or a free port when 0) and forward; returns self."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        """Stop listening, close every connection and stop the thread. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None

    # --- faults ----------------------------------------------------------------------------------

    def pause(self) -> None:
        self._call(self._set_flowing(flowing=False))

    def resume(self) -> None:
        self._call(self._set_flowing(flowing=True))

    @property
    def paused(self) -> bool:
        return self._flowing is not None and not self._flowing.is_set()

    def sever(self) -> int:
        """Close every open connection (both sides); how many were closed."""
        return self._call(self._sever())

    @property
    def connections_open(self) -> int:
        return len(self._links)

    @property
    def address(self) -> tuple[str, int]:
        return self.listen_host, self.port

    # --- inside the proxy's loop -----------------------------------------------------------------

    def _call(self, coroutine: Coroutine[object, object, T]) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the proxy is not started")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_flowing(self, *, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _sever(self) -> int:
        links = list(self._links)
        self._links.clear()
        for link in links:
            link.abort()
        self.connections_severed += len(links)
        return len(links)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._sever()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.connections_total += 1
        link = _Link(client)
        self._links.add(link)
        try:
            if await self._held(link):  # a stalled network connects nothing either
                return
            try:
                up_reader, link.upstream = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                return  # upstream refused: the client sees its connection close
            await asyncio.gather(
                self._pump(link, client_reader, link.upstream, up=True),
                self._pump(link, up_reader, client, up=False),
            )
        finally:
            self._links.discard(link)
            link.abort()

    async def _held(self, link: _Link) -> bool:
        """Wait while paused; whether the link died meanwhile (severed or closed)."""
        assert self._flowing is not None
        if not self._flowing.is_set():
            waits = [
                asyncio.ensure_future(self._flowing.wait()),
                asyncio.ensure_future(link.dead.wait()),
            ]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiting in pending:
                waiting.cancel()
        return link.dead.is_set()

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        """Copy one direction; while paused, hold what was read and read no more."""
        try:
            while True:
                data = await reader.read(CHUNK)
                if await self._held(link):
                    return
                if not data:
                    break
                writer.write(data)
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()  # a half-close travels on, as it would through the network
        except OSError:
            link.abort()  # a reset on one side resets the other
