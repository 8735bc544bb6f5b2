"""Ctrl-C and SIGTERM end ``remax-ray train``'s start-up within seconds, also while Ray waits in C++.

Python runs a signal's handler (``KeyboardInterrupt`` for Ctrl-C; for SIGTERM, the ``sys.exit``
that ``ray.init`` installs) only when the main thread is between bytecodes. While ``ray.init``
connects to a GCS, the main thread sits in Ray's C++ client for about 40 s per try (5 s for the
channel, 5 s for pubsub, 30 s for the cluster id) and Ray makes 20 tries: the handler waits that
long, so the signal looks ignored. The C part of Python's handler still writes the signal's number
to the wakeup fd (:func:`signal.set_wakeup_fd`) at once, and Ray's client releases the GIL while it
waits: a watcher thread sees the signal, gives the handler ``grace`` seconds to end the process
the ordinary way, and otherwise ends it with ``os._exit(128 + signum)``. A second signal ends it
at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

__all__ = ["GRACE_S", "prompt_exit"]

GRACE_S = 2.0
_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
_STOP = b"\0"  # no signal has the number 0


@contextlib.contextmanager
def prompt_exit(grace: float = GRACE_S, during: str = "start-up") -> Iterator[None]:
    """While the block runs (and, once a signal came, until the process ends), Ctrl-C or SIGTERM
    end the process within ``grace`` seconds. Only the main thread can set this up; elsewhere
    it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(reader, grace, during), name="remax-prompt-exit",
                               daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        with contextlib.suppress(OSError):  # a full buffer: the watcher has a signal already
            writer.send(_STOP)
        writer.close()


def _watch(reader: socket.socket, grace: float, during: str) -> None:
    signum = _next_signal(reader)
    if signum is None:  # the block ended without a signal
        reader.close()
        return
    deadline = time.monotonic() + grace
    while (left := deadline - time.monotonic()) > 0:
        reader.settimeout(left)
        try:
            data = reader.recv(64)
        except TimeoutError:
            break
        if any(b in _NAMES for b in data):  # a second signal: no more grace
            break
        if not data or _STOP in data:  # the block ended (its exception is on its way): wait it out
            time.sleep(max(0.0, deadline - time.monotonic()))
            break
    os.write(2, f"\nremax-ray: {_NAMES[signum]} during {during}; exiting\n".encode())
    os._exit(128 + signum)


def _next_signal(reader: socket.socket) -> int | None:
    """The first Ctrl-C or SIGTERM written to the wakeup fd, or None once the block has ended."""
    while True:
        data = reader.recv(64)
        for b in data:
            if b in _NAMES:
                return b
        if not data or _STOP in data:
            return None
