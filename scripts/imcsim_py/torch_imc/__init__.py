"""torch_imc: IMC-aware quantised PyTorch layers, exact to docs/SEMANTICS.md, and a general
torch.fx exporter to the imcsim graph format.

    import sys; sys.path.insert(0, "<repo>/scripts")
    from imcsim_py import torch_imc as ti

    model = ti.models.LeNet5(ti.ImcConfig())         # or any nn.Module of torch_imc layers
    ...float training...                              # ti.set_quantized(model, False)
    ti.fold_bn(model); ti.prepare(model)
    ti.init_act_ranges(model, train_pixels[:5120])
    ti.set_quantized(model, True); ti.calibrate_adcs(model, train_pixels[:512])
    ...QAT (model.train(): hardware forward, STE backward)...
    model.eval(); logits = model(pixels)              # exactly reference.py's output
    g = ti.export_graph(model, "name", golden_pixels=test_pixels, golden_labels=labels)

See scripts/imcsim_py/torch_imc/README.md.
"""

from .config import AdcConfig, ImcConfig  # noqa: F401
from .layers import (ActQuant, ImcConv2d, ImcInput, ImcLinear, ImcModule, QAdd,  # noqa: F401
                     QAvgPool2d, QReLU, act_quants, fold_bn, imc_layers, set_quantized)
from .graph import (EXPORTER, UnsupportedLayer, analyse, build_graph, export_graph,  # noqa: F401
                    prepare, trace)
from .calib import calibrate_adcs, init_act_ranges  # noqa: F401
from . import models  # noqa: F401
