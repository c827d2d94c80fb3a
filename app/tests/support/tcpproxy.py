"""Stand-ins for a database host that died without a word, all on the loopback interface.

A killed machine refuses nothing: its address swallows every packet, so a client waits for its own
timeout. BlackHole is a listening socket that never accepts: the kernel completes the first
handshakes into its backlog and drops further SYNs, and nobody ever answers. TcpProxy forwards to a
real server until freeze(): from then on it forwards nothing and answers nothing, on the
connections already open (a pool's) as on new ones, and closes none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

from tests.support.pgcluster import free_port


class BlackHole:
    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TcpProxy:
    """127.0.0.1:<port> forwarded to 127.0.0.1:<target_port>, in a thread of its own."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._frozen = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"tcpproxy-{self.port}", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def freeze(self) -> None:
        """From now on the host is dead: nothing forwarded either way, nothing closed."""
        self._frozen.set()

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = self._loop.create_future()
        tasks: set[asyncio.Task[None]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._forward(reader, writer)
            except asyncio.CancelledError:
                pass  # close(): asyncio would log a cancelled connection handler as an error
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(handle, "127.0.0.1", self.port)
        self._ready.set()
        await self._stop
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_w = None
        try:
            if not self._frozen.is_set():
                server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
                await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))
            else:
                await asyncio.Event().wait()  # frozen: hold the connection open, silent, until close()
        finally:
            for w in (client_w, server_w):
                if w is not None:
                    w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copies until end of stream; once frozen, swallows whatever arrives and never closes."""
        while data := await reader.read(65536):
            if self._frozen.is_set():
                continue
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        if not self._frozen.is_set():
            with contextlib.suppress(OSError):
                writer.write_eof()
        else:
            await asyncio.Event().wait()
