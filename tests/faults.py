"""A loopback TCP proxy that loses one COMMIT's reply, for the unknown-outcome tests (a test fixture).

The engine connects to the proxy's port; the proxy forwards every byte between it and the real
server, and reads the client's messages just enough to see each SQL text:

- PostgreSQL: after the startup packet (an SSLRequest or GSSENCRequest is answered ``N`` by the
  proxy itself, so the session stays plain text), typed messages: simple ``Q`` queries and
  extended-protocol ``P`` (Parse) messages;
- MySQL/MariaDB: packets (3-byte length, sequence id, payload); a packet with sequence id 0 whose
  payload starts with 0x03 is a COM_QUERY (handshake packets from the client have ids >= 1).
  Packets of 16 MB and more (split payloads) are forwarded but not read.

``arm(after=...)`` picks the COMMIT to break: the first COMMIT sent, on the same connection, after a
statement containing ``after`` (case and runs of whitespace ignored); ``after=None`` picks the next
COMMIT on any connection. The fault fires once:

- ``deliver=True``: the COMMIT is forwarded, the proxy waits for the server's reply (so the commit
  provably happened) and then closes both sockets without passing the reply on: the server
  committed, the client sees a lost connection;
- ``deliver=False``: both sockets are closed before the COMMIT is forwarded: the server sees its
  client go away inside the transaction and rolls it back.

Every wait is bounded; ``stop()`` closes every socket and joins every thread.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.engine import URL

Protocol = Literal["postgres", "mysql"]

_PG_SSL_REQUEST = 80877103
_PG_GSSENC_REQUEST = 80877104
_MYSQL_COM_QUERY = 0x03
_POLL = 0.2  # seconds between checks of the stop flag
_REPLY_WAIT = 30.0  # the longest wait for the server's reply to the broken COMMIT
_JOIN_WAIT = 5.0


def _squeeze(sql: str) -> str:
    return " ".join(sql.split()).lower()


def _is_commit(sql: str) -> bool:
    return sql.strip().rstrip(";").strip().upper() == "COMMIT"


@dataclass
class _Fault:
    after: str | None
    deliver: bool
    primed: _Link | None = None  # the connection that sent ``after``


class _ClientParser:
    """Splits the client's byte stream into whole messages, each with its SQL text or None."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.buffer = b""
        self.startup = protocol == "postgres"

    def feed(self, data: bytes) -> Iterator[tuple[bytes, str | None, bytes]]:
        """Yield (message bytes to forward, SQL text or None, bytes to answer the client with)."""
        self.buffer += data
        while True:
            message = self._next()
            if message is None:
                return
            yield message

    def _take(self, size: int) -> bytes | None:
        if len(self.buffer) < size:
            return None
        chunk, self.buffer = self.buffer[:size], self.buffer[size:]
        return chunk

    def _next(self) -> tuple[bytes, str | None, bytes] | None:
        if self.protocol == "mysql":
            if len(self.buffer) < 4:
                return None
            length = int.from_bytes(self.buffer[:3], "little")
            packet = self._take(4 + length)
            if packet is None:
                return None
            seq, payload = packet[3], packet[4:]
            if seq == 0 and length < 0xFFFFFF and payload[:1] == bytes([_MYSQL_COM_QUERY]):
                return packet, payload[1:].decode("utf-8", "replace"), b""
            return packet, None, b""
        if self.startup:
            if len(self.buffer) < 8:
                return None
            (length, code) = struct.unpack("!II", self.buffer[:8])
            packet = self._take(length)
            if packet is None:
                return None
            if code in (_PG_SSL_REQUEST, _PG_GSSENC_REQUEST):
                return b"", None, b"N"  # refused by the proxy: the client goes on in plain text
            self.startup = False
            return packet, None, b""
        if len(self.buffer) < 5:
            return None
        kind = self.buffer[:1]
        (length,) = struct.unpack("!I", self.buffer[1:5])
        message = self._take(1 + length)
        if message is None:
            return None
        body = message[5:]
        if kind == b"Q":
            return message, body.split(b"\0", 1)[0].decode("utf-8", "replace"), b""
        if kind == b"P":
            parts = body.split(b"\0", 2)  # statement name, query, parameter types
            return message, parts[1].decode("utf-8", "replace") if len(parts) > 1 else None, b""
        return message, None, b""


class _Link:
    """One client connection and its upstream connection, pumped by one thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.parser = _ClientParser(proxy.protocol)
        self.thread = threading.Thread(target=self._run, name="fault-proxy-link", daemon=True)

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _run(self) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.client, selectors.EVENT_READ)
                selector.register(self.server, selectors.EVENT_READ)
                while not self.proxy.stopping.is_set():
                    for key, _ in selector.select(_POLL):
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        if key.fileobj is self.server:
                            self.client.sendall(data)
                        elif not self._from_client(data):
                            return
        except OSError:
            return  # a socket closed under us (the peer, a fault, or stop())
        finally:
            self.close()

    def _from_client(self, data: bytes) -> bool:
        """Forward the client's whole messages; False once a fault has closed the link."""
        for message, sql, answer in self.parser.feed(data):
            if answer:
                self.client.sendall(answer)
            if sql is not None and self.proxy.should_break(self, sql):
                self._break(message)
                return False
            if message:
                self.server.sendall(message)
        return True

    def _break(self, commit: bytes) -> None:
        fault = self.proxy.fired_fault
        assert fault is not None
        if fault.deliver:
            self.server.sendall(commit)
            # The server replies only once the commit is done: wait for (and drop) that reply.
            self.server.settimeout(_REPLY_WAIT)
            try:
                self.proxy.reply_dropped = bool(self.server.recv(65536))
            except OSError:
                self.proxy.reply_dropped = False
        self.close()
        self.proxy.fired.set()


class FaultProxy:
    """Loopback proxy to ``upstream``; ``start()``/``stop()``, or use it as a context manager."""

    def __init__(self, protocol: Protocol, upstream_host: str, upstream_port: int) -> None:
        self.protocol = protocol
        self.upstream = (upstream_host, upstream_port)
        self.stopping = threading.Event()
        self.fired = threading.Event()
        self.fired_fault: _Fault | None = None
        self.reply_dropped = False
        self._fault: _Fault | None = None
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))  # a free port, chosen by the kernel
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy-accept", daemon=True)

    def url(self, url: URL) -> URL:
        """``url`` pointed at the proxy instead of the server."""
        return url.set(host="127.0.0.1", port=self.port)

    def arm(self, after: str | None = None, *, deliver: bool = True) -> None:
        with self._lock:
            self._fault = _Fault(after, deliver)
            self.fired.clear()
            self.fired_fault = None
            self.reply_dropped = False

    def should_break(self, link: _Link, sql: str) -> bool:
        with self._lock:
            fault = self._fault
            if fault is None:
                return False
            if fault.after is not None and fault.primed is None and _squeeze(fault.after) in _squeeze(sql):
                fault.primed = link
                return False
            if not _is_commit(sql) or (fault.after is not None and fault.primed is not link):
                return False
            self._fault, self.fired_fault = None, fault
            return True

    def start(self) -> FaultProxy:
        self._listener.listen(16)
        self._listener.settimeout(_POLL)
        self._acceptor.start()
        return self

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(self.upstream, timeout=5.0)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            link = _Link(self, client, server)
            with self._lock:
                self._links.append(link)
            link.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        if self._acceptor.is_alive():
            self._acceptor.join(_JOIN_WAIT)
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        for link in links:
            if link.thread.is_alive():
                link.thread.join(_JOIN_WAIT)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
