"""A TCP proxy a test can take down and bring back: what "the provider's port is blocked" looks like to a client.

Up, it pipes every connection to its upstream. Down, it closes every open connection (so kept-alive client
connections break too) and answers each new one with an immediate reset - the client sees a connection error, as
with a port blocked by a firewall that rejects - and counts it: `refused` is how many calls still tried to reach
the dependency while it was down."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class OutageProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.up = True
        self.connections = 0  # accepted while up
        self.refused = 0  # accepted and reset while down
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def take_down(self) -> None:
        with self._lock:
            self.up = False
            for connection in list(self._open):
                _reset(connection)
            self._open.clear()

    def bring_back(self) -> None:
        with self._lock:
            self.up = True

    def stop(self) -> None:
        self._stopped = True
        self.take_down()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self.up:
                    self.refused += 1
                    _reset(client)
                    continue
                self.connections += 1
                try:
                    upstream = socket.create_connection(self._upstream, timeout=5)
                except OSError:
                    _reset(client)
                    continue
                self._open.update((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(target)
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.close()


def _reset(connection: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a graceful FIN: a refused connection, not an empty answer."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
