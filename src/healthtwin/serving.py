"""Checks before a server starts, so that a mistake costs one clear line and leaves nothing behind.

* The port: tried before anything is generated or written (keys, demo data), so a busy port is reported
  at once instead of after a two-minute build, or after keys were created for a server that never ran.
* The data folder: one `healthtwin serve` (with its workers) or `healthtwin demo` at a time. The lock is
  `serving.lock` in the folder, held with `lockf` for the life of the process and naming its pid, so a
  second one answers which process holds it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

LOCK_NAME = "serving.lock"
_held: dict[str, int] = {}


def check_port(host: str, port: int) -> None:
    """ValueError if nothing can listen on host:port now (in use, or not an address of this machine)."""
    if not 0 < port < 65536:
        raise ValueError(f"--port {port}: a TCP port is 1-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ValueError(f"port {port} on {host} is already in use (another server?); stop it or choose "
                                 "another --port") from None
            raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def hold_data_dir(data_dir: Path) -> None:
    """Takes the data folder's serving lock for this process, or raises ValueError naming who holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = str(data_dir / LOCK_NAME)
    if path in _held:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ValueError(f"{data_dir} is in use by process {holder} (it holds {path}): one server or demo per "
                         "data folder; stop it, or use another --data-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[path] = fd


def release_data_dir(data_dir: Path) -> None:
    fd = _held.pop(str(data_dir / LOCK_NAME), None)
    if fd is not None:
        os.close(fd)  # closing releases the lockf lock
