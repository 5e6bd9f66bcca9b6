"""A round-robin TCP proxy for tests: each new client connection to 127.0.0.1:``port``
goes to the next target in turn (A, B, A, ...), so the requests of a client that opens
several connections are spread over the nodes. ``connections[i]`` counts the connections
sent to target ``i``."""

from __future__ import annotations

import contextlib
import functools
import socket
import threading

from tests.support.server import free_port


class RoundRobinProxy:
    def __init__(self, *target_ports: int) -> None:
        if not target_ports:
            raise ValueError("no target")
        self.targets = target_ports
        self.connections = [0] * len(target_ports)
        self.port = free_port()
        self._next = 0
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as clients name the registry."""
        return f"127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.connections = [0] * len(self.targets)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                index = self._next
                self._next = (index + 1) % len(self.targets)
                self.connections[index] += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", self.targets[index]), 10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            done = threading.Barrier(2, action=functools.partial(self._drop, client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, done), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # pass the half-close on, keep the reply flowing
        except OSError:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait()

    def _drop(self, *socks: socket.socket) -> None:
        """Both directions ended: close the pair."""
        with self._lock:
            self._conns -= set(socks)
        for s in socks:
            s.close()

    def close(self) -> None:
        """Stop listening and reset every open connection."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
