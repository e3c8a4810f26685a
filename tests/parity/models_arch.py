"""Architecture facts of torchvision models, for tests/lua/test_models_resnet.lua.

usage: models_arch.py SPEC [SPEC ...]
  SPEC = NAME[:NUM_CLASSES[:KEY=VALUE,KEY=VALUE...]], e.g. resnet50, vgg11:200,
  mobilenet_v2:1000:width_mult=0.5 (values are Python literals)

Builds each torchvision model (weights=None; initialisation switched off, as
only the structure is wanted) in one process and prints, for each SPEC:
    model SPEC NUM_CLASSES NUM_PARAMETERS NUM_STATE_TENSORS
    key SPEC STATE_DICT_KEY SHAPE          (one line per state_dict entry, in order;
                                            SHAPE is comma separated, '-' for a 0-d tensor)
    module SPEC QUALIFIED_NAME TYPE        (one line per named module, in order; '-' is the root)
    repr SPEC |LINE                        (the lines of print(model))
A line "error SPEC MESSAGE" replaces them when torchvision cannot build it.
"""
import ast
import sys

import torch
import torchvision


def _noop(t, *args, **kwargs):
    return t


def quiet_init():
    # the weights' values are not wanted: skip the random fills (much faster)
    for n in ("kaiming_normal_", "kaiming_uniform_", "normal_", "uniform_", "constant_", "zeros_", "ones_",
              "trunc_normal_", "xavier_uniform_", "xavier_normal_"):
        setattr(torch.nn.init, n, _noop)
    for cls in (torch.nn.Conv2d, torch.nn.Linear):
        cls.reset_parameters = lambda self: None


def main(argv):
    quiet_init()
    out = sys.stdout
    for spec in argv:
        parts = spec.split(":")
        name = parts[0]
        nc = int(parts[1]) if len(parts) > 1 and parts[1] else 1000
        kwargs = {}
        if len(parts) > 2 and parts[2]:
            for kv in parts[2].split(","):
                k, _, v = kv.partition("=")
                kwargs[k] = ast.literal_eval(v)
        try:
            m = torchvision.models.get_model(name, weights=None, num_classes=nc, **kwargs)
        except Exception as e:  # noqa: BLE001 -- reported to the test
            out.write("error %s %s\n" % (spec, str(e).replace("\n", " ")))
            continue
        sd = m.state_dict()
        nparams = sum(p.numel() for p in m.parameters())
        out.write("model %s %d %d %d\n" % (spec, nc, nparams, len(sd)))
        for k, v in sd.items():
            shape = ",".join(str(s) for s in v.shape) if v.dim() > 0 else "-"
            out.write("key %s %s %s\n" % (spec, k, shape))
        for k, mod in m.named_modules():
            out.write("module %s %s %s\n" % (spec, k if k else "-", type(mod).__name__))
        for line in repr(m).split("\n"):
            out.write("repr %s |%s\n" % (spec, line))
    out.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
