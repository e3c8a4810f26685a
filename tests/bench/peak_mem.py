"""PyTorch side of the memory benchmark: the golden network at batch 32,
64x64 inputs; prints "<rss before MB> <peak MB>" from /proc/self/status."""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "parity"))
import golden  # noqa: E402


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024


torch.manual_seed(1)
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
w = 32
p, buf = {}, {}
for name, cin, cout, k in [("stem", 3, w, 3), ("b1c1", w, w, 3), ("b1c2", w, w, 3), ("b2c1", w, 2 * w, 3),
                           ("b2c2", 2 * w, 2 * w, 3), ("b2sc", w, 2 * w, 1)]:
    p[name + ".conv"] = torch.randn(cout, cin, k, k) * (2 / (cin * k * k)) ** 0.5
    p[name + ".bn_w"] = torch.rand(cout) + 0.5
    p[name + ".bn_b"] = torch.randn(cout) * 0.1
    buf[name + ".rm"] = torch.zeros(cout)
    buf[name + ".rv"] = torch.ones(cout)
p["fc.w"] = torch.randn(200, 2 * w) * 0.1
p["fc.b"] = torch.zeros(200)
for v in p.values():
    v.requires_grad_(True)
x, target = torch.randn(32, 3, 64, 64), torch.randint(0, 200, (32,))
before = status("VmRSS")
loss = F.cross_entropy(golden.forward(p, buf, x), target)
loss.backward()
print("%.1f %.1f" % (before, status("VmHWM")))
