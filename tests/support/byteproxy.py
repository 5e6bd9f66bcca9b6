"""A TCP proxy for tests that counts the bytes each way, can cut connections after N
client bytes (for interrupted transfers) and can slow the server's answers down
(``rate``). (tests/support/tcpproxy.py is another helper's proxy that refuses
connections while "cut".)"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.support.server import free_port


class ByteProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``, in threads.

    ``sent`` counts client-to-server bytes, ``received`` server-to-client bytes (both
    since start or :meth:`reset`). After :meth:`cut_after` (n), once n more client bytes
    went through, every open connection is closed (abruptly) and that one cut is spent.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.sent = 0
        self.received = 0
        self.cuts = 0
        self._budget: int | None = None
        self.rate: int | None = None  # server-to-client bytes/s per connection (None: any)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.sent = self.received = 0

    def cut_after(self, n: int) -> None:
        with self._lock:
            self._budget = n

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                cut = False
                with self._lock:
                    if upward and self._budget is not None:
                        if len(data) >= self._budget:
                            data, cut = data[: self._budget], True
                            self._budget = None
                            self.cuts += 1
                        else:
                            self._budget -= len(data)
                    if upward:
                        self.sent += len(data)
                    else:
                        self.received += len(data)
                if data:
                    dst.sendall(data)
                    rate = self.rate
                    if rate and not upward:
                        time.sleep(len(data) / rate)
                if cut:
                    self._drop_all()
                    return
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
                with self._lock:
                    self._conns.discard(s)
