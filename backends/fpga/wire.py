"""The framed format between the host and device processes, and between devices.

Every message is one frame: a fixed header (magic, kind, dtype, ndim, request id, name
length, payload length), the name (UTF-8), the shape (``ndim`` unsigned 64-bit dims)
and the raw bytes of one numpy array, read back with ``np.frombuffer``. Control
messages (a device's slice description, its peers) are frames whose payload is JSON.
No pickle anywhere (a device's program is walked as the compiled artefact is).

Our own format rather than gRPC or a message queue: a frame is one ``sendmsg`` of the
array's own memory and the peers are a handful of fixed TCP links, where a library's
per-message machinery would be most of the cost of a small register.
"""
from __future__ import annotations

import enum
import json
import socket
import struct
from typing import NamedTuple

import numpy as np

_MAGIC = b"BWD1"
_HEADER = struct.Struct("!4sBBBxQIQ")  # magic, kind, dtype code, ndim, request id, name bytes, payload bytes
_DIM = struct.Struct("!Q")
# Index = the dtype code on the wire. Strings (object arrays) have no raw bytes to send.
DTYPES = tuple(np.dtype(t) for t in ("float32", "float64", "float16", "int8", "int16", "int32", "int64",
                                     "uint8", "uint16", "uint32", "uint64", "bool"))
_CODE = {dt: i for i, dt in enumerate(DTYPES)}
_EMPTY = np.zeros(0, np.uint8)


class Kind(enum.IntEnum):
    HELLO = 1  # JSON {"role": "host"} or {"role": "peer", "device": d, "epoch": e}: a connection's first frame
    LOAD = 2  # host -> device: JSON description of its slice; ARRAY frames follow
    ARRAY = 3  # one array of the slice (weights, constants, host partitions)
    READY = 4  # device -> host: the slice is loaded (or WIRE done)
    WIRE = 5  # host -> device: JSON {"epoch": e, "peers": {device: "host:port"}}: (re)connect its links
    INPUT = 6  # host -> device: a request input
    RUN = 7  # host -> device: run request ``rid`` (its inputs came first)
    TENSOR = 8  # device -> device: a register of request ``rid``
    OUTPUT = 9  # device -> host: a request output
    DONE = 10  # device -> host: request ``rid`` finished on this device
    ERROR = 11  # device -> host: JSON {"error": why}; request ``rid`` failed on this device
    PING = 12  # host -> device, answered by READY: is it alive and listening to us?


class Frame(NamedTuple):
    kind: Kind
    rid: int
    name: str
    array: np.ndarray


class Closed(ConnectionError):
    """The other end closed the connection (its process exited or was killed)."""


def send(sock: socket.socket, kind: Kind, rid: int = 0, name: str = "", array: np.ndarray | None = None) -> None:
    """One frame: ``array`` (any numeric dtype, any layout) under ``name`` for request ``rid``."""
    a = _EMPTY if array is None else np.asarray(array, order="C")  # ascontiguousarray would make 0-d 1-d
    code = _CODE.get(a.dtype)
    if code is None:
        raise TypeError(f"{name}: dtype {a.dtype} cannot cross a device link (numeric and bool only)")
    key = name.encode()
    head = _HEADER.pack(_MAGIC, kind, code, a.ndim, rid, len(key), a.nbytes) + key + b"".join(
        _DIM.pack(d) for d in a.shape)
    body = memoryview(a).cast("B") if a.nbytes else b""
    sent = sock.sendmsg([head, body])
    if sent < len(head) + len(body):  # a short write (a full buffer): the rest the slow way
        sock.sendall((head + bytes(body))[sent:])


def send_json(sock: socket.socket, kind: Kind, obj, rid: int = 0) -> None:
    send(sock, kind, rid, "", np.frombuffer(json.dumps(obj).encode(), np.uint8))


def json_of(frame: Frame):
    """The JSON object a control frame carries."""
    return json.loads(frame.array.tobytes().decode())


def recv(sock: socket.socket) -> Frame:
    """The next frame; ``Closed`` if the peer has gone, ``ValueError`` on a malformed one."""
    magic, kind, code, ndim, rid, nkey, nbytes = _HEADER.unpack(_exact(sock, _HEADER.size))
    if magic != _MAGIC or code >= len(DTYPES):
        raise ValueError(f"not a bwserve device frame (magic {magic!r}, dtype code {code})")
    name = _exact(sock, nkey).decode() if nkey else ""
    dims = _exact(sock, 8 * ndim) if ndim else b""
    shape = tuple(_DIM.unpack_from(dims, 8 * i)[0] for i in range(ndim))
    payload = _exact(sock, nbytes) if nbytes else bytearray()
    return Frame(Kind(kind), rid, name, np.frombuffer(payload, DTYPES[code]).reshape(shape))


def _exact(sock: socket.socket, n: int) -> bytearray:
    # Exactly n bytes, never more: what is left stays in the kernel, so select() still
    # says whether another frame is waiting.
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise Closed("connection closed")
        got += k
    return buf


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ``ValueError`` saying what was expected."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (a name or address, a port 1-65535)")
    return host.strip("[]"), int(port)


def connect(address: str, timeout: float) -> socket.socket:
    """A TCP connection to ``HOST:PORT`` with Nagle off and ``timeout`` on every call."""
    sock = socket.create_connection(parse_address(address), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock

