"""ONNX files exported by PyTorch (torch.onnx.export) for aviary's importer.

usage: onnx_ref.py DIR SIZE NAME[:OPSET...][,NAME...] [OPSETS]
  writes DIR/input.safetensors (a fixed 3 x 3 x SIZE x SIZE input) and, for
  every model NAME, opset (default 13,17) and do_constant_folding in
  (True, False) (NAME:17 limits NAME to opset 17): DIR/<name>_op<opset>_<fold|nofold>.onnx, plus
  DIR/<name>.logits.safetensors (logits in evaluation mode on that input).
  Torchvision models with random weights (seeded); 'shapenet' is a small net
  whose forward computes shapes (x.view(x.size(0), -1)), pads, resizes and
  ends in a softmax, so the exported graph has Shape/Gather/Unsqueeze/Concat/
  Reshape subgraphs under a dynamic batch.
Prints one JSON line {"files": [...]}."""
import json
import os
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

warnings.filterwarnings("ignore")


class ShapeNet(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.k = (size + 2) // 2
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.pad(x, (1, 1, 1, 1))
        x = F.avg_pool2d(x, self.k)
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = x.view(x.size(0), -1)
        return torch.softmax(self.fc(x), dim=1)


def build(name, size):
    if name == "shapenet":
        m = ShapeNet(size)
        with torch.no_grad():
            m.bn.running_mean.uniform_(-0.5, 0.5)
            m.bn.running_var.uniform_(0.5, 1.5)
        return m
    kw = {"num_classes": 10}
    if name == "googlenet":
        kw.update(aux_logits=False, transform_input=False, init_weights=True)
    m = getattr(torchvision.models, name)(**kw)
    with torch.no_grad():  # non-trivial running statistics, so folding and BN both matter
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m


def main():
    d, size, names = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    opsets = [int(o) for o in (sys.argv[4] if len(sys.argv) > 4 else "13,17").split(",")]
    torch.manual_seed(0)
    x = torch.randn(3, 3, size, size)
    st.save(os.path.join(d, "input.safetensors"), {"input": x})
    files = []
    for spec in names:
        name, *only = spec.split(":")
        torch.manual_seed(1)
        m = build(name, size).eval()
        with torch.no_grad():
            y = m(x)
        st.save(os.path.join(d, name + ".logits.safetensors"), {"logits": y.contiguous()})
        for opset in ([int(o) for o in only] or opsets):
            for fold in (True, False):
                p = os.path.join(d, "%s_op%d_%s.onnx" % (name, opset, "fold" if fold else "nofold"))
                torch.onnx.export(m, x, p, opset_version=opset, do_constant_folding=fold,
                                  input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
                files.append(p)
    print(json.dumps({"files": files}))


if __name__ == "__main__":
    main()
