"""A TCP proxy between the connector and the test gateway that can cut or stall the connection.

`FaultyProxy(upstream_port).start()` listens on 127.0.0.1 and a free port and forwards bytes
both ways. `cut()` resets every open connection and refuses new ones (the server is gone);
`stall()` keeps connections open but forwards nothing more, and accepts new ones that never
get an answer (a network that black-holes packets); `restore()` forwards again (connections
opened during a stall stay dead, as after a real outage).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading


class FaultyProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.host = "127.0.0.1"
        self.upstream = (upstream_host, upstream_port)
        probe = socket.socket()
        probe.bind((self.host, 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.mode = "open"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stopped = False

    def start(self) -> FaultyProxy:
        self._listen()
        return self

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
                stalled = self.mode == "stall"
            if stalled:
                continue  # accepted, never answered
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._sockets.append(server)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        pair = {client: server, server: client}
        while True:
            with self._lock:
                mode = self.mode
            if mode == "stall":
                return  # both sockets stay open: nothing moves any more
            try:
                readable, _, _ = select.select(list(pair), [], [], 0.05)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        _close(client)
                        _close(server)
                        return
                    pair[source].sendall(data)
            except OSError:
                _close(client)
                _close(server)
                return

    def cut(self) -> None:
        """Reset every connection and refuse new ones."""
        with self._lock:
            self.mode = "cut"
            sockets, self._sockets = self._sockets, []
        if self._listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would leave it listening
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            _close(self._listener)
            self._listener = None
        for sock in sockets:
            _reset(sock)

    def stall(self) -> None:
        """Stop forwarding: open connections and new ones get no answer."""
        with self._lock:
            self.mode = "stall"

    def restore(self) -> None:
        with self._lock:
            previous, self.mode = self.mode, "open"
            sockets, self._sockets = self._sockets, []
        for sock in sockets:  # what stalled stays dead
            _reset(sock)
        if previous == "cut" or self._listener is None:
            self._listen()

    def stop(self) -> None:
        self.cut()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
