"""Python bindings of sim/graph/imcsim_graph.proto.

The module is generated with ``protoc --python_out`` into ``scripts/imcsim_py/_generated/``
(gitignored) whenever it is missing or older than the .proto, then imported.

    from imcsim_py.graph_pb import pb        # the generated imcsim_graph_pb2 module
    g = load_graph("workloads/fmnist_cnn/fmnist_cnn.imcg")   # .imcg container or text
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "sim" / "graph"
PROTO_FILE = PROTO_DIR / "imcsim_graph.proto"
GEN_DIR = Path(__file__).resolve().parent / "_generated"
GEN_FILE = GEN_DIR / "imcsim_graph_pb2.py"


class ProtocError(RuntimeError):
    pass


def _generate() -> None:
    protoc = shutil.which("protoc")
    if protoc is None:
        raise ProtocError(
            "protoc not found on PATH: it is needed to generate the Python bindings of "
            f"{PROTO_FILE} (Debian: apt-get install protobuf-compiler)")
    if not PROTO_FILE.is_file():
        raise ProtocError(f"graph schema not found: {PROTO_FILE}")
    GEN_DIR.mkdir(parents=True, exist_ok=True)
    # Generate into a temporary directory, then rename atomically, so that concurrent
    # processes never import a half-written file.
    with tempfile.TemporaryDirectory(dir=GEN_DIR) as tmp:
        cmd = [protoc, f"--proto_path={PROTO_DIR}", f"--python_out={tmp}", str(PROTO_FILE)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise ProtocError(f"protoc failed ({' '.join(cmd)}):\n{res.stderr}")
        os.replace(Path(tmp) / "imcsim_graph_pb2.py", GEN_FILE)
    init = GEN_DIR / "__init__.py"
    if not init.exists():
        init.write_text("")


def _load():
    if (not GEN_FILE.is_file()) or GEN_FILE.stat().st_mtime < PROTO_FILE.stat().st_mtime:
        _generate()
    name = "imcsim_graph_pb2"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GEN_FILE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


pb = _load()
Graph = pb.Graph


TEXT_SUFFIXES = (".txt", ".pbtxt", ".textproto")


def load_graph(path) -> "pb.Graph":
    """Read a graph: a binary .imcg container (docs/graph_format.md, checked: magic, version,
    length, checksum) or protobuf text format (.txt / .pbtxt / .textproto)."""
    path = Path(path)
    if path.name.endswith(TEXT_SUFFIXES):
        from google.protobuf import text_format
        g = pb.Graph()
        text_format.Parse(path.read_text(), g)
        return g
    from . import imcg_file
    return imcg_file.read_imcg(str(path), pb.Graph)


def save_graph(g, path) -> None:
    """Write a graph: .imcg container (atomically), or text format for the text suffixes."""
    path = Path(path)
    if path.name.endswith(TEXT_SUFFIXES):
        from google.protobuf import text_format
        path.write_text(text_format.MessageToString(g))
        return
    from . import imcg_file
    imcg_file.write_imcg(str(path), g)
