"""torchvision side of the model-zoo parity test (tests/lua/test_models.lua).

usage:
  models_ref.py export DIR name:classes:size[,name:classes:size...]
      for each model: a torchvision model with seeded random weights and
      batch-norm statistics taken from a real forward pass, written as
      DIR/<name>.weights.safetensors (state_dict, torchvision names) and
      DIR/<name>.io.safetensors (input batch, logits in evaluate mode), with
      the state_dict key order and parameter count as metadata
  models_ref.py check DIR name:classes:size[,...]
      loads DIR/<name>.aviary.safetensors (written by aviary's model:save)
      into a fresh torchvision model with load_state_dict(strict=True), runs
      the same input and compares with DIR/<name>.aviary_logits.safetensors;
      prints one line per model: "ok <name> <max rel diff>" or "fail <name> <why>"
"""
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

torch.set_num_threads(int(os.environ.get("AVIARY_NUM_THREADS", "2")))


def build(name, classes):
    kw = {"num_classes": classes}
    if name in ("googlenet", "inception_v3"):
        kw.update(aux_logits=False, init_weights=True)
    return torchvision.models.__dict__[name](weights=None, **kw)


def parse(spec):
    out = []
    for item in spec.split(","):
        name, classes, size = item.split(":")
        out.append((name, int(classes), int(size)))
    return out


def calibrate(model, x):
    """Random affine batch-norm parameters, and running statistics from one
    training-mode pass over a calibration batch, so no layer is an identity and activations keep a
    sane scale through a deep randomly initialised network."""
    g = torch.Generator().manual_seed(7)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            m.reset_running_stats()
        # residual branches end small, as in trained networks (torchvision's
        # zero_init_residual taken part way): a deep random ResNet whose every
        # block adds a unit-variance branch is chaotic, and its float32 logits
        # differ from its own float64 ones by more than the tolerance
        for blk in model.modules():
            last = getattr(blk, "bn3", None) if type(blk).__name__ == "Bottleneck" else (
                getattr(blk, "bn2", None) if type(blk).__name__ == "BasicBlock" else None)
            if last is not None:
                last.weight.mul_(0.2)
        for m in bns:
            m.momentum = None  # cumulative average: one batch gives its own statistics
        model.train()
        model(x)
        for m in bns:
            m.momentum = 0.1
    model.eval()


def export(d, specs):
    for name, classes, size in specs:
        torch.manual_seed(0)
        model = build(name, classes)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(2, 3, size, size, generator=gen)
        # statistics from another, larger batch: at small inputs the last stages
        # are 1x1, and statistics of the evaluated batch itself would make the
        # logits hinge on float32 rounding
        calibrate(model, torch.randn(16, 3, size, size, generator=gen))
        with torch.no_grad():
            y = model(x)
        sd = model.state_dict()
        nparams = sum(p.numel() for p in model.parameters())
        st.save(os.path.join(d, name + ".weights.safetensors"), sd)
        st.save(os.path.join(d, name + ".io.safetensors"), {"input": x, "logits": y},
                {"keys": ",".join(sd.keys()), "shapes": ";".join("x".join(map(str, t.shape)) for t in sd.values()),
                 "num_parameters": nparams})
        del model, sd
        print("exported", name, nparams, flush=True)


def check(d, specs):
    for name, classes, size in specs:
        try:
            torch.manual_seed(123)
            model = build(name, classes)
            sd, _ = st.load(os.path.join(d, name + ".aviary.safetensors"))
            model.load_state_dict(sd, strict=True)
            model.eval()
            io, _ = st.load(os.path.join(d, name + ".io.safetensors"))
            ours, _ = st.load(os.path.join(d, name + ".aviary_logits.safetensors"))
            with torch.no_grad():
                y = model(io["input"])
            ref = ours["logits"]
            rel = ((y - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
            same_top1 = bool((y.argmax(1) == ref.argmax(1)).all())
            if rel <= 1e-4 and same_top1:
                print("ok", name, "%.3g" % rel, flush=True)
            else:
                print("fail", name, "max relative difference %.3g (tolerance 1e-4), same top-1: %s" % (rel, same_top1),
                      flush=True)
        except Exception as e:  # one model's failure must not hide the others'
            msg = str(e).replace("\n", " ")[:600]
            print("fail", name, type(e).__name__ + ": " + msg, flush=True)


def main():
    mode, d, spec = sys.argv[1], sys.argv[2], sys.argv[3]
    {"export": export, "check": check}[mode](d, parse(spec))


if __name__ == "__main__":
    main()
