"""A minimal HTTP/1.1 client for the benchmarks' simulated clients: h11 over a trio socket, one
request at a time on a keep-alive connection. It costs the machine far less CPU per request
than a general client, so that on a small machine the load generator takes as little as it
can of what the server and the agents under test need."""

from __future__ import annotations

import json

import h11
import trio

__all__ = ["Connection"]


class Connection:
    """One keep-alive HTTP/1.1 connection to the server, one request at a time, as an agent
    holds it; opened on first use, and again after the server closed it or a call failed."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._host_header = f"{host}:{port}"
        self._stream: trio.SocketStream | None = None
        self._h11 = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, target: str, token: str, body: object = None
    ) -> tuple[int, bytes]:
        """Send one request; its status and body."""
        if self._stream is None:
            self._stream = await trio.open_tcp_stream(*self._address)
            self._h11 = h11.Connection(h11.CLIENT)
        content = b"" if body is None else json.dumps(body).encode()
        headers = [
            ("Host", self._host_header),
            ("Authorization", f"Bearer {token}"),
            ("Content-Length", str(len(content))),
        ]
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        try:
            out = self._h11.send(h11.Request(method=method, target=target, headers=headers)) or b""
            if content:
                out += self._h11.send(h11.Data(data=content)) or b""
            out += self._h11.send(h11.EndOfMessage()) or b""
            await self._stream.send_all(out)
            status, answer = await self._response(self._stream)
        except BaseException:
            self._forget()
            raise
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        else:  # the server said it closes the connection: open another next time
            self._forget()
        return status, answer

    async def _response(self, stream: trio.SocketStream) -> tuple[int, bytes]:
        status = 0
        parts: list[bytes] = []
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                self._h11.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(parts)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection mid-answer")

    def close(self) -> None:
        """Close the connection (the next request opens another)."""
        self._forget()

    def _forget(self) -> None:
        if self._stream is not None:
            # closing a socket needs no await; a graceful close would be a checkpoint, which
            # a cancelled caller cannot have
            self._stream.socket.close()
            self._stream = None
