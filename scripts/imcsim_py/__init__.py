"""imcsim Python tooling: graph protobuf bindings, IDX reader, the numpy reference of
docs/SEMANTICS.md, and the training / export pipeline.

Import by putting ``scripts/`` on ``sys.path``::

    sys.path.insert(0, "<repo>/scripts")
    from imcsim_py import reference, graph_pb, idx
"""

__all__ = ["graph_pb", "idx", "reference"]
