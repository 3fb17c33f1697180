"""Reader of (optionally gzip-compressed) IDX files, as used by (Fashion-)MNIST.

Format: magic = 0x00 0x00 <dtype> <ndim>, then ndim big-endian uint32 sizes, then the data
in row-major order. Only the unsigned-byte type (0x08) is accepted by default, since the
datasets the project uses are ``idx-u8``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxError(ValueError):
    pass


def parse_idx(data: bytes, name: str = "<bytes>", expect_ndim: int | None = None,
              allow_types=(0x08,)) -> np.ndarray:
    if len(data) < 4:
        raise IdxError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise IdxError(f"{name}: bad IDX magic {data[:4].hex()} (first two bytes must be 0)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code not in _DTYPES:
        raise IdxError(f"{name}: unknown IDX data type 0x{dtype_code:02x}")
    if dtype_code not in allow_types:
        raise IdxError(f"{name}: IDX data type 0x{dtype_code:02x} not accepted here "
                       f"(expected {', '.join(f'0x{t:02x}' for t in allow_types)})")
    if ndim == 0:
        raise IdxError(f"{name}: IDX with 0 dimensions")
    if expect_ndim is not None and ndim != expect_ndim:
        raise IdxError(f"{name}: expected {expect_ndim} dimensions (magic 0x0000"
                       f"{dtype_code:02x}{expect_ndim:02x}), found {ndim}")
    hdr = 4 + 4 * ndim
    if len(data) < hdr:
        raise IdxError(f"{name}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dt = _DTYPES[dtype_code]
    need = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    have = len(data) - hdr
    if have != need:
        raise IdxError(f"{name}: IDX payload is {have} bytes, shape {shape} needs {need}")
    arr = np.frombuffer(data, dtype=dt, offset=hdr).reshape(shape)
    return arr.astype(dt.newbyteorder("="), copy=True)


def read_idx(path, expect_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` is decompressed). Raises IdxError / FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise IdxError(f"{path}: corrupt gzip stream: {e}") from e
    return parse_idx(raw, str(path), expect_ndim)


def read_images(path) -> np.ndarray:
    """uint8 images [n][rows][cols] (IDX magic 0x00000803)."""
    return read_idx(path, expect_ndim=3)


def read_labels(path) -> np.ndarray:
    """uint8 labels [n] (IDX magic 0x00000801)."""
    return read_idx(path, expect_ndim=1)


DEFAULT_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def load_fashion_mnist(split: str, root=DEFAULT_FMNIST_DIR):
    """(images uint8 [n][28][28], labels uint8 [n]) of split 'train' or 't10k'."""
    if split not in ("train", "t10k"):
        raise ValueError(f"split must be 'train' or 't10k', not {split!r}")
    root = Path(root)
    imgs = read_images(root / f"{split}-images-idx3-ubyte.gz")
    labels = read_labels(root / f"{split}-labels-idx1-ubyte.gz")
    if imgs.shape[0] != labels.shape[0]:
        raise IdxError(f"{root}/{split}: {imgs.shape[0]} images but {labels.shape[0]} labels")
    return imgs, labels
