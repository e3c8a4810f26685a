"""PyTorch side of tests/gpu/bench_gpu.lua: the same resnet50 cases on the same GPU.

usage: torch_bench_gpu.py [--batch 64] [--size 224] [--steps 10] [--warmup 3] [--model resnet50]
                          [--cases a,b] [--out file.json]
Writes {"who": "PyTorch", "device": ..., "meta": {...}, "cases": [{"name", "images_per_s", "ms_per_step",
"peak_mb"} or {"name", "error"}]}. cuDNN benchmark mode and TF32 are on, as in bench_gpu.lua."""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

CASES = [
    ("train_fp32_tf32", True, None, False),
    ("train_bf16", True, torch.bfloat16, False),
    ("train_bf16_channels_last", True, torch.bfloat16, True),
    ("infer_fp32_tf32", False, None, False),
    ("infer_bf16", False, torch.bfloat16, False),
]


def run_case(args, name, training, dtype, channels_last):
    torch.manual_seed(0)
    model = torchvision.models.__dict__[args.model](num_classes=1000).cuda()
    x = torch.randn(args.batch, 3, args.size, args.size, device="cuda")
    y = torch.randint(0, 1000, (args.batch,), device="cuda")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    if training:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            loss.backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                model(x)
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"name": name, "images_per_s": args.batch * args.steps / dt, "ms_per_step": dt / args.steps * 1e3,
            "peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--cases", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("torch_bench_gpu: SKIP (no CUDA device)")
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    wanted = set(args.cases.split(",")) if args.cases else None
    out = {"who": "PyTorch", "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "cudnn": torch.backends.cudnn.version(),
           "meta": {"model": args.model, "batch": args.batch, "size": args.size, "steps": args.steps}, "cases": []}
    for name, training, dtype, cl in CASES:
        if wanted and name not in wanted:
            continue
        try:
            r = run_case(args, name, training, dtype, cl)
            print("torch  %-28s %8.1f img/s  %8.2f ms/step  peak %.0f MB" % (name, r["images_per_s"], r["ms_per_step"],
                                                                         r["peak_mb"]), file=sys.stderr)
        except Exception as e:  # one failing case must not hide the others
            r = {"name": name, "error": repr(e)}
            print("torch  %-28s error: %r" % (name, e), file=sys.stderr)
        out["cases"].append(r)
        torch.cuda.empty_cache()
        if args.out:  # after every case: a run stopped at its time limit still reports
            with open(args.out, "w") as f:
                json.dump(out, f)
                f.write("\n")


if __name__ == "__main__":
    main()
