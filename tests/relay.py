"""A TCP relay on 127.0.0.1 whose target can be switched: each new connection is piped to the current one, as
a load balancer in front of replicas (or of a daemon being restarted) sends a client's next connection
wherever it likes. Connections already open stay with their target."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Relay:
    """Listening on ``url``; ``target`` is the ``(host, port)`` new connections go to; ``returned`` counts the
    bytes targets sent back to clients through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.returned = 0
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink, back in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(source, sink, back), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, back: bool) -> None:
        """Copy until ``source`` ends, then end ``sink``'s sending side (a cut body stays cut); ``back``: count it in
        ``returned``."""
        try:
            while chunk := source.recv(1 << 16):
                sink.sendall(chunk)
                if back:
                    with self._lock:
                        self.returned += len(chunk)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            for end in (source, sink):
                end.close()

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for end in self._open:
                end.close()


@contextmanager
def relay(target: tuple[str, int]) -> Iterator[Relay]:
    """A `Relay` to ``target``, closed after the block."""
    running = Relay(target)
    try:
        yield running
    finally:
        running.close()
