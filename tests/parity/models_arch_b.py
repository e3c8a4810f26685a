"""Architecture facts of torchvision 0.14 models for tests/lua/test_models_inception.lua,
all from one python process.

usage: models_arch_b.py NUM_CLASSES MODEL [MODEL ...]

For each model prints
    model NAME NUM_PARAMETERS NUM_STATE_ENTRIES
    key NAME.DOTTED.KEY SIZE1,SIZE2,...     (one per state_dict entry, in order; '-' for 0-d)
    module QUALIFIED.NAME TYPE              (one per named module, in order; '-' for the model)
googlenet and inception_v3 are built without auxiliary classifiers
(aux_logits=False); no model is initialised (the random fills are skipped),
which changes no name or shape.
"""
import sys
import warnings

import torch
import torchvision.models as tvm

warnings.filterwarnings("ignore")


def _noop(t, *args, **kwargs):
    return t


def quiet_init():
    # only names and shapes are wanted: skip the random fills (much faster)
    for n in ("kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_", "constant_", "zeros_", "ones_",
              "trunc_normal_", "xavier_uniform_", "xavier_normal_"):
        setattr(torch.nn.init, n, _noop)
    for cls in (torch.nn.Conv2d, torch.nn.Linear):
        cls.reset_parameters = lambda self: None


def build(name, num_classes):
    if name == "googlenet":
        return tvm.googlenet(weights=None, aux_logits=False, init_weights=False, num_classes=num_classes)
    if name == "inception_v3":
        return tvm.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=num_classes)
    return getattr(tvm, name)(weights=None, num_classes=num_classes)


def main():
    quiet_init()
    num_classes = int(sys.argv[1])
    out = []
    for name in sys.argv[2:]:
        m = build(name, num_classes)
        sd = m.state_dict()
        n = sum(p.numel() for p in m.parameters())
        out.append("model %s %d %d" % (name, n, len(sd)))
        for k, v in sd.items():
            shape = ",".join(str(s) for s in v.shape) or "-"
            out.append("key %s %s" % (k, shape))
        for k, mod in m.named_modules():
            out.append("module %s %s" % (k or "-", type(mod).__name__))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
