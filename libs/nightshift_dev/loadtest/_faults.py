"""A TCP proxy the load test can cut: a server "goes away" for a while without touching the shared stack.

Clients (the alert publishers, the driver's APDB pool and S3 client) connect through
the proxy; :meth:`TcpProxy.outage` closes every open connection and refuses new ones
for the given seconds, as a restarting PostgreSQL or an unreachable S3 server looks to
its clients. The server behind it keeps running (other users share it).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; :meth:`outage` cuts it for a while.

    Parameters
    ----------
    host, port : str, int
        The server behind the proxy.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._down_until = 0.0
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.outages: list[tuple[float, float]] = []
        threading.Thread(target=self._accept, name=f"proxy-{port}", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def outage(self, seconds: float) -> None:
        """Close every connection now and refuse new ones for ``seconds`` (returns at once)."""
        now = time.monotonic()
        with self._lock:
            self._down_until = now + seconds
            conns, self._conns = self._conns, set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self.outages.append((time.time(), seconds))

    def close(self) -> None:
        self._closed = True
        self.outage(0)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                client.close()  # refused while the server is "away"
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
