"""PyTorch side of peak_model.lua: prints "<rss before MB> <peak MB>".
usage: peak_model.py resnet18|resnet50 train|infer threads"""
import sys

import torch
import torch.nn.functional as F
import torchvision


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024


def main():
    name, mode, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    model = torchvision.models.__dict__[name](num_classes=200)
    before = status("VmRSS")
    if mode == "train":
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x, y = torch.randn(16, 3, 112, 112), torch.randint(0, 200, (16,))
        for _ in range(2):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    else:
        model.eval()
        x = torch.randn(16, 3, 224, 224)
        with torch.no_grad():
            for _ in range(2):
                model(x)
    print("%.1f %.1f" % (before, status("VmHWM")))


if __name__ == "__main__":
    main()
