"""Reading and writing .imcg graph files (docs/graph_format.md).

An .imcg file is a small container around the serialised protobuf Graph, so that a truncated
or corrupted file is always detected (a bare protobuf can lose trailing fields silently):

    offset  size  content
    0       8     magic b"IMCGRAPH"
    8       4     container version, uint32 little-endian (1)
    12      4     reserved, 0
    16      8     payload length L, uint64 little-endian
    24      L     payload: imcsim.pb.Graph, protobuf binary
    24+L    8     FNV-1a 64 of the payload, uint64 little-endian

Text-format graphs (tests) are files ending in .txt / .pbtxt / .textproto.
"""
from __future__ import annotations

import os
import struct
import tempfile

MAGIC = b"IMCGRAPH"
CONTAINER_VERSION = 1
_HEADER = struct.Struct("<8sIIQ")


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def encode(graph) -> bytes:
    payload = graph.SerializeToString()
    return (_HEADER.pack(MAGIC, CONTAINER_VERSION, 0, len(payload)) + payload
            + struct.pack("<Q", fnv1a64(payload)))


def write_imcg(path: str, graph) -> None:
    """Writes `graph` atomically (temporary file + rename)."""
    data = encode(graph)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".tmp.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_imcg(path: str, graph_cls):
    """Reads and checks a container; returns a `graph_cls` message. Raises ValueError."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _HEADER.size or data[:8] != MAGIC:
        raise ValueError(f"{path}: not an imcsim graph (missing IMCGRAPH header)")
    _, version, _, length = _HEADER.unpack_from(data)
    if version != CONTAINER_VERSION:
        raise ValueError(f"{path}: unsupported container version {version}")
    if len(data) != _HEADER.size + length + 8:
        raise ValueError(f"{path}: truncated or padded file")
    payload = data[_HEADER.size:_HEADER.size + length]
    (stored,) = struct.unpack_from("<Q", data, _HEADER.size + length)
    if stored != fnv1a64(payload):
        raise ValueError(f"{path}: corrupt file (checksum mismatch)")
    graph = graph_cls()
    graph.ParseFromString(payload)
    return graph
