"""The golden test's PyTorch side: the same small ResNet-style network as
tests/lua/test_golden.lua, written functionally, with the weights and data
aviary saved. Writes logits, loss, every parameter gradient of step 1, the
loss of each of 10 SGD-with-momentum steps, and the final running stats.

usage: golden.py in.safetensors out.safetensors"""
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, __import__("os").path.dirname(__file__))
import st  # noqa: E402

torch.set_num_threads(2)


def conv_bn(p, buf, name, x, stride=1, padding=1):
    x = F.conv2d(x, p[name + ".conv"], None, stride=stride, padding=padding)
    return F.batch_norm(x, buf[name + ".rm"], buf[name + ".rv"], p[name + ".bn_w"], p[name + ".bn_b"],
                        training=True, momentum=0.1, eps=1e-5)


def forward(p, buf, x):
    h = F.relu(conv_bn(p, buf, "stem", x))
    h = F.max_pool2d(h, 3, stride=2, padding=1)
    # block 1: identity shortcut
    y = F.relu(conv_bn(p, buf, "b1c1", h))
    y = conv_bn(p, buf, "b1c2", y)
    h = F.relu(y + h)
    # block 2: strided, projection shortcut
    y = F.relu(conv_bn(p, buf, "b2c1", h, stride=2))
    y = conv_bn(p, buf, "b2c2", y)
    s = conv_bn(p, buf, "b2sc", h, stride=2, padding=0)
    h = F.relu(y + s)
    h = F.adaptive_avg_pool2d(h, 1).flatten(1)
    return F.linear(h, p["fc.w"], p["fc.b"])


def main():
    t, _ = st.load(sys.argv[1])
    x, target = t.pop("x"), t.pop("target") - 1
    p = {k[2:]: v.clone().requires_grad_(True) for k, v in t.items() if k.startswith("p.")}
    buf = {k[2:]: v.clone() for k, v in t.items() if k.startswith("b.")}
    out = {}
    mom = {k: torch.zeros_like(v) for k, v in p.items()}
    lr, m = 0.05, 0.9
    for step in range(10):
        logits = forward(p, buf, x)
        loss = F.cross_entropy(logits, target)
        grads = torch.autograd.grad(loss, list(p.values()))
        if step == 0:
            out["logits"] = logits.detach()
            for (k, _), g in zip(p.items(), grads):
                out["grad." + k] = g
        out["loss.%d" % step] = loss.detach().reshape(1)
        with torch.no_grad():
            for (k, v), g in zip(p.items(), grads):
                mom[k].mul_(m).add_(g)
                v.sub_(lr * mom[k])
    for k, v in buf.items():
        out["buf." + k] = v
    st.save(sys.argv[2], out)


if __name__ == "__main__":
    main()
