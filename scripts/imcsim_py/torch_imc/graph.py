"""Tracing a torch_imc model with torch.fx: binding (prepare) and the general exporter.

``analyse(model)`` traces any nn.Module whose forward is built from supported operations and
maps every traced node to a graph node of the format (docs/graph_format.md):

==========================================  =====================================
traced operation                            graph node
==========================================  =====================================
torch_imc.ImcInput (right after the input)  InputSpec
torch_imc.ImcConv2d / ImcLinear             imc (Conv2d / Linear), fused ReLU
torch_imc.QAdd                              add (optional ReLU)
torch_imc.QReLU, nn.ReLU, F.relu, .relu()   relu (nn.ReLU keeps the input's quant)
torch_imc.QAvgPool2d                        avg_pool
nn.MaxPool2d, F.max_pool2d                  max_pool (quant unchanged)
nn.Flatten, torch.flatten, .flatten()       flatten (from dim 1)
nn.Identity, nn.Dropout                     nothing (aliases; eval no-ops)
==========================================  =====================================

Anything else raises ``UnsupportedLayer`` naming the module path (or traced function) and its
type. ``prepare(model)`` binds each IMC layer and average pool to the quantiser that produced
its input (needed by the exact and the training forward); ``export_graph(model, ...)``
writes the graph, with golden pairs computed by reference.py.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as Fn
from torch.fx.passes.shape_prop import ShapeProp

from .. import export as E
from .. import reference as R
from ..graph_pb import pb
from . import layers as L

EXPORTER = "scripts/imcsim_py/torch_imc/graph.py 1"


class UnsupportedLayer(TypeError):
    """The model holds an operation that has no graph-format equivalent."""


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return isinstance(m, L.ImcModule) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


@dataclass
class TVal:
    """A traced tensor: graph tensor name, its quantiser (None: raw pixels or float), shape."""
    name: str
    src: object
    shape: tuple
    kind: str = "codes"           # "pixels" | "codes" | "float"


@dataclass
class Op:
    """One graph node to emit."""
    op: str                       # imc | max_pool | avg_pool | add | relu | flatten
    name: str
    inputs: list
    shape: tuple
    quant: tuple | None           # (scale, zero_point, bits); None: float output (bits 0)
    module: object = None
    path: str = ""
    params: dict = field(default_factory=dict)


@dataclass
class Analysis:
    input_module: L.ImcInput
    input_path: str
    ops: list
    bindings: list                # (module, _InputQuantRef)
    output: TVal


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _where(node, modules):
    if node.op == "call_module":
        m = modules[node.target]
        return f"module '{node.target}' ({type(m).__module__}.{type(m).__name__})"
    if node.op == "call_function":
        fn = getattr(node.target, "__name__", str(node.target))
        return f"function {getattr(node.target, '__module__', '') or ''}.{fn} (traced node '{node.name}')"
    return f"{node.op} '{node.target}' (traced node '{node.name}')"


def _quant_of(src):
    if src is None:
        return None
    return tuple(src.quant_tuple())


def analyse(model: nn.Module) -> Analysis:
    """Trace `model` and map it to graph nodes (see the module docstring)."""
    gm = trace(model)
    modules = dict(gm.named_modules())
    inputs = [m for m in modules.values() if isinstance(m, L.ImcInput)]
    if len(inputs) != 1:
        raise UnsupportedLayer(f"{type(model).__name__}: the model needs exactly one "
                               f"torch_imc.ImcInput (has {len(inputs)})")
    in_shape = inputs[0].shape

    # shapes from a float forward (no binding needed)
    was_training = model.training
    qstate = {m: m.quantized for m in model.modules() if isinstance(m, L.ImcModule)}
    shape_err = None
    try:
        L.set_quantized(gm, False)
        gm.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros((1,) + in_shape))
    except Exception as e:            # reported at the first node without a shape
        shape_err = e
    finally:
        for m, q in qstate.items():
            m.quantized = q
        model.train(was_training)

    def shape_of(node):
        tm = node.meta.get("tensor_meta")
        if tm is None and shape_err is not None:
            raise RuntimeError(f"{_where(node, modules)}: running the float model on a "
                               f"{in_shape} input failed: {shape_err}") from shape_err
        if tm is None or not hasattr(tm, "shape"):
            raise UnsupportedLayer(f"{_where(node, modules)}: does not produce one tensor")
        return tuple(int(v) for v in tm.shape[1:])

    vals: dict = {}
    ops: list = []
    bindings = []
    calls: dict = {}
    names = {"input"}
    input_module = input_path = None
    output = None

    def uniq(base):
        n = base
        i = 1
        while n in names:
            i += 1
            n = f"{base}_{i}"
        names.add(n)
        return n

    def need_codes(node, arg, what):
        v = vals.get(arg)
        if v is None:
            raise UnsupportedLayer(f"{_where(node, modules)}: {what} input is not a traced tensor")
        if v.kind == "pixels":
            raise UnsupportedLayer(f"{_where(node, modules)}: takes the raw model input; the "
                                   "input (pixels) must go through torch_imc.ImcInput first")
        if v.kind == "float":
            raise UnsupportedLayer(f"{_where(node, modules)}: its input is the float "
                                   "(out_bits=0) output of an earlier layer; only the last "
                                   "layer may have a float output")
        return v

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if any(v.kind == "pixels" for v in vals.values()):
                raise UnsupportedLayer(f"{type(model).__name__}: the model must take exactly "
                                       f"one input (second: '{node.target}')")
            vals[node] = TVal("input", None, in_shape, "pixels")
            continue
        if node.op == "output":
            arg = node.args[0]
            if not isinstance(arg, fx.Node) or arg not in vals:
                raise UnsupportedLayer(f"{type(model).__name__}: the model must return one tensor")
            output = vals[arg]
            if not ops or ops[-1].name != output.name:
                raise UnsupportedLayer(f"{type(model).__name__}: the returned tensor "
                                       f"('{output.name}') must be produced by the last node")
            continue
        if node.op == "get_attr":
            raise UnsupportedLayer(f"{_where(node, modules)}: parameters / buffers used "
                                   "directly in forward are not supported")
        for a in node.all_input_nodes:
            if a in vals and vals[a].kind == "float":
                raise UnsupportedLayer(f"{_where(node, modules)}: its input is the float "
                                       "(out_bits=0) output of an earlier layer; only the last "
                                       "layer may have a float output")
        tensor_args = [a for a in node.args if isinstance(a, fx.Node)]

        if node.op == "call_module":
            m = modules[node.target]
            path = node.target
            if isinstance(m, L.ImcModule):
                calls[path] = calls.get(path, 0) + 1
                if calls[path] > 1:
                    raise UnsupportedLayer(f"{_where(node, modules)}: called more than once; a "
                                           "torch_imc module (it owns a quantiser) must be used "
                                           "once")
            if node.kwargs:
                raise UnsupportedLayer(f"{_where(node, modules)}: keyword arguments in the call")
            if isinstance(m, L.ImcInput):
                x = vals.get(tensor_args[0]) if tensor_args else None
                if x is None or x.kind != "pixels":
                    raise UnsupportedLayer(f"{_where(node, modules)}: must be applied to the "
                                           "model input")
                input_module, input_path = m, path
                vals[node] = TVal("input", m, in_shape)
                continue
            if isinstance(m, L._ImcLayer):
                x = need_codes(node, tensor_args[0], "its")
                shp = shape_of(node)
                if m.is_conv and (len(x.shape) != 3 or x.shape[0] != m.Cin):
                    raise UnsupportedLayer(f"{_where(node, modules)}: input shape {x.shape}")
                if not m.is_conv and int(np.prod(x.shape)) != m.Cin:
                    raise UnsupportedLayer(f"{_where(node, modules)}: input of "
                                           f"{int(np.prod(x.shape))} values, in_features {m.Cin}")
                if not m.is_conv and len(x.shape) != 1:
                    raise UnsupportedLayer(f"{_where(node, modules)}: a Linear layer needs a "
                                           f"vector input (flatten first), got shape {x.shape}")
                bindings.append((m, L._InputQuantRef(x.src, path)))
                name = uniq(path)
                q = None if m.out_quant is None else m.out_quant
                ops.append(Op("imc", name, [x.name], shp, None, m, path))
                ops[-1].params["out_src"] = q
                vals[node] = TVal(name, q, shp, "float" if q is None else "codes")
                continue
            if isinstance(m, L.QAdd):
                if len(tensor_args) != 2:
                    raise UnsupportedLayer(f"{_where(node, modules)}: QAdd takes two tensors")
                a = need_codes(node, tensor_args[0], "first")
                b = need_codes(node, tensor_args[1], "second")
                if a.shape != b.shape:
                    raise UnsupportedLayer(f"{_where(node, modules)}: add of shapes {a.shape} "
                                           f"and {b.shape}")
                name = uniq(path)
                ops.append(Op("add", name, [a.name, b.name], a.shape, None, m, path,
                              {"relu": m.relu, "out_src": m.out_quant}))
                vals[node] = TVal(name, m.out_quant, a.shape)
                continue
            if isinstance(m, (L.QReLU, nn.ReLU)):
                x = need_codes(node, tensor_args[0], "its")
                src = m.out_quant if isinstance(m, L.QReLU) and m.out_quant is not None else x.src
                name = uniq(path)
                ops.append(Op("relu", name, [x.name], x.shape, None, m, path, {"out_src": src}))
                vals[node] = TVal(name, src, x.shape)
                continue
            if isinstance(m, L.QAvgPool2d):
                x = need_codes(node, tensor_args[0], "its")
                if len(x.shape) != 3:
                    raise UnsupportedLayer(f"{_where(node, modules)}: input shape {x.shape}")
                k, s, p = m.geometry(x.shape[1], x.shape[2])
                bindings.append((m, L._InputQuantRef(x.src, path)))
                name = uniq(path)
                ops.append(Op("avg_pool", name, [x.name], shape_of(node), None, m, path,
                              {"k": k, "s": s, "p": p, "out_src": m.out_quant}))
                vals[node] = TVal(name, m.out_quant, shape_of(node))
                continue
            if isinstance(m, nn.MaxPool2d):
                x = need_codes(node, tensor_args[0], "its")
                if m.ceil_mode or m.return_indices or _pair(m.dilation) != (1, 1):
                    raise UnsupportedLayer(f"{_where(node, modules)}: only dilation 1, "
                                           "ceil_mode=False, return_indices=False")
                k = _pair(m.kernel_size)
                s = _pair(m.stride if m.stride is not None else m.kernel_size)
                p = _pair(m.padding)
                name = uniq(path)
                ops.append(Op("max_pool", name, [x.name], shape_of(node), None, m, path,
                              {"k": k, "s": s, "p": p, "out_src": x.src}))
                vals[node] = TVal(name, x.src, shape_of(node))
                continue
            if isinstance(m, nn.Flatten):
                if m.start_dim != 1 or m.end_dim != -1:
                    raise UnsupportedLayer(f"{_where(node, modules)}: only Flatten(1, -1)")
                x = need_codes(node, tensor_args[0], "its")
                vals[node] = _flatten(ops, x, uniq, path)
                continue
            if isinstance(m, (nn.Identity, nn.Dropout, nn.Dropout2d)):
                vals[node] = vals[tensor_args[0]]
                continue
            hint = ""
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                hint = "; use torch_imc.ImcConv2d / ImcLinear"
            elif isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                hint = "; use torch_imc.QAvgPool2d (it requantises its output)"
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                hint = ("; give the preceding ImcConv2d / ImcLinear bn=True and fold it "
                        "(torch_imc.fold_bn)")
            raise UnsupportedLayer(f"{_where(node, modules)}: unsupported layer{hint}")

        if node.op == "call_function":
            t = node.target
            if t in (torch.flatten,):
                x = need_codes(node, tensor_args[0], "its")
                sd = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                ed = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
                if sd != 1 or ed != -1:
                    raise UnsupportedLayer(f"{_where(node, modules)}: only flatten(x, 1)")
                vals[node] = _flatten(ops, x, uniq, node.name)
                continue
            if t in (Fn.relu, torch.relu):
                x = need_codes(node, tensor_args[0], "its")
                name = uniq(node.name)
                ops.append(Op("relu", name, [x.name], x.shape, None, None, node.name,
                              {"out_src": x.src}))
                vals[node] = TVal(name, x.src, x.shape)
                continue
            if t in (Fn.max_pool2d,):
                x = need_codes(node, tensor_args[0], "its")
                args = list(node.args[1:])
                kw = dict(node.kwargs)
                names_ = ["kernel_size", "stride", "padding", "dilation", "ceil_mode",
                          "return_indices"]
                for i, a in enumerate(args):
                    kw[names_[i]] = a
                k = _pair(kw["kernel_size"])
                s = _pair(kw.get("stride") or kw["kernel_size"])
                p = _pair(kw.get("padding", 0))
                if _pair(kw.get("dilation", 1)) != (1, 1) or kw.get("ceil_mode") or \
                        kw.get("return_indices"):
                    raise UnsupportedLayer(f"{_where(node, modules)}: only dilation 1, "
                                           "ceil_mode=False")
                name = uniq(node.name)
                shp = shape_of(node)
                ops.append(Op("max_pool", name, [x.name], shp, None, None, node.name,
                              {"k": k, "s": s, "p": p, "out_src": x.src}))
                vals[node] = TVal(name, x.src, shp)
                continue
            hint = ""
            if t in (operator.add, torch.add, operator.iadd):
                hint = "; use torch_imc.QAdd for residual adds (it requantises the sum)"
            raise UnsupportedLayer(f"{_where(node, modules)}: unsupported operation{hint}")

        if node.op == "call_method":
            if node.target == "flatten":
                x = need_codes(node, tensor_args[0], "its")
                sd = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                ed = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
                if sd != 1 or ed != -1:
                    raise UnsupportedLayer(f"method flatten (traced node '{node.name}'): only "
                                           "x.flatten(1)")
                vals[node] = _flatten(ops, x, uniq, node.name)
                continue
            if node.target == "relu":
                x = need_codes(node, tensor_args[0], "its")
                name = uniq(node.name)
                ops.append(Op("relu", name, [x.name], x.shape, None, None, node.name,
                              {"out_src": x.src}))
                vals[node] = TVal(name, x.src, x.shape)
                continue
            raise UnsupportedLayer(f"method Tensor.{node.target} (traced node '{node.name}'): "
                                   "unsupported operation")
        raise UnsupportedLayer(f"{_where(node, modules)}: unsupported")

    if input_module is None:
        raise UnsupportedLayer(f"{type(model).__name__}: torch_imc.ImcInput is not applied to "
                               "the model input")
    if output is None:
        raise UnsupportedLayer(f"{type(model).__name__}: no output")
    if not any(o.op == "imc" for o in ops):
        raise UnsupportedLayer(f"{type(model).__name__}: no IMC layer")
    # the traced (module) objects are those of gm, which shares submodules with `model`
    return Analysis(input_module, input_path, ops, bindings, output)


def _flatten(ops, x: TVal, uniq, base):
    if len(x.shape) == 1:
        return x
    name = uniq(base)
    shp = (int(np.prod(x.shape)),)
    ops.append(Op("flatten", name, [x.name], shp, None, None, base, {"out_src": x.src}))
    return TVal(name, x.src, shp)


def prepare(model: nn.Module) -> Analysis:
    """Bind every IMC layer / average pool to the quantiser of its input (traced)."""
    an = analyse(model)
    for m, ref in an.bindings:
        m._in_q = ref
        if isinstance(m, L._ImcLayer):
            m.invalidate()
    return an


# ---------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------

def _q(src):
    if src is None:
        return E.quant(1.0, 0, 0)
    s, z, b = src.quant_tuple()
    return E.quant(s, z, b)


def _adc_spec(m: L._ImcLayer):
    a = m.cfg.adc
    if a.kind == "ideal" or not bool(m.adc_ready):
        return E.adc_spec("ideal", frac_bits=a.frac_bits, granularity=a.granularity)
    if a.kind == "linear":
        return E.adc_spec("linear", bits=a.bits, frac_bits=a.frac_bits, rounding=a.rounding,
                          signed_codes=a.signed, granularity=a.granularity,
                          step_fx=m.adc_step_fx.numpy(), centre_fx=m.adc_centre_fx.numpy())
    return E.adc_spec("nonlinear", bits=a.bits, frac_bits=a.frac_bits, granularity=a.granularity,
                      thresholds_fx=m.adc_thresholds_fx.numpy(),
                      levels_fx=m.adc_levels_fx.numpy())


def build_graph(model: nn.Module, name: str, num_classes: int | None = None) -> "pb.Graph":
    """The graph of a torch_imc model (quantised mode, after prepare / calibration)."""
    an = prepare(model)
    g = pb.Graph()
    g.format_version = 1
    g.name = name
    inp = an.input_module
    g.input.CopyFrom(E.input_spec(inp.shape, tensor="input", pixel_scale=inp.pixel_scale,
                                  mean=inp.mean, std=inp.std,
                                  q=E.quant(inp.q_scale, inp.q_zero, inp.q_bits)))
    with torch.no_grad():
        for o in an.ops:
            oq = _q(o.params.get("out_src"))
            if o.op == "imc":
                m = o.module
                wq, s_w = m.integer_weights()
                sx, zx, bx = m.input_quant()
                cfg = m.cfg
                kw = dict(weight_bits=cfg.weight_bits, cell_bits=cfg.cell_bits,
                          dac_bits=cfg.dac_bits, encoding=cfg.encoding, tiling=cfg.tiling,
                          array_rows=cfg.array_rows, array_cols=cfg.array_cols,
                          weight_scale=s_w.double().numpy(),
                          psum_scale=(m.psum_scale.numpy() if bool((m.psum_scale != 1.0).any())
                                      else ()),
                          bias=(m.bias64().numpy() if m.bias is not None else ()),
                          ashift_offset=(1 << (bx - 1)) if cfg.ashift else 0,
                          adc=_adc_spec(m), relu=m.relu, output_quant=oq,
                          output_shape=o.shape)
                w = wq.to(torch.int64).numpy()
                if m.is_conv:
                    node = E.imc_node(o.name, o.inputs, w, kind="conv", kernel=m.kernel_size,
                                      stride=m.stride, pad=m.padding, **kw)
                else:
                    node = E.imc_node(o.name, o.inputs, w, kind="linear", **kw)
            elif o.op in ("max_pool", "avg_pool"):
                node = E.pool_node(o.name, o.inputs, "max" if o.op == "max_pool" else "avg",
                                   o.params["k"], o.params["s"], o.params["p"], oq, o.shape)
            elif o.op == "add":
                node = E.simple_node(o.name, o.inputs, "add", oq, o.shape, relu=o.params["relu"])
            else:
                node = E.simple_node(o.name, o.inputs, o.op, oq, o.shape)
            g.nodes.append(node)
    out_shape = an.output.shape
    g.num_classes = int(num_classes if num_classes is not None else np.prod(out_shape))
    return g


def export_graph(model: nn.Module, name: str, *, golden_pixels=None, golden_labels=None,
                 golden_indices=(0, 1, 2, 3), provenance: dict | None = None,
                 num_classes: int | None = None, check: bool = True) -> "pb.Graph":
    """Graph of `model` with provenance (dict of Provenance fields) and golden pairs of the
    given dataset indices computed by reference.py (re-checked if `check`)."""
    g = build_graph(model, name, num_classes)
    for k, v in (provenance or {}).items():
        setattr(g.provenance, k, v)
    if not g.provenance.exporter:
        g.provenance.exporter = EXPORTER
    if golden_pixels is not None:
        ref = R.Reference(g)
        labels = golden_labels if golden_labels is not None else np.zeros(len(golden_pixels),
                                                                           dtype=np.int64)
        E.add_goldens(g, golden_pixels, labels, golden_indices, ref)
        if check:
            problems = E.check_goldens(g)
            if problems:
                raise RuntimeError(f"{name}: golden self-check failed: {problems[:5]}")
    return g
