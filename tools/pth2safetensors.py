#!/usr/bin/env python3
"""Converts a PyTorch checkpoint (.pth/.pt, a pickle) into safetensors that
aviary reads: `models.create(name, {weights = "out.safetensors"})`.

usage: pth2safetensors.py in.pth out.safetensors [--key state_dict]
       pth2safetensors.py --torchvision resnet50 out.safetensors   (torchvision's ImageNet weights)

Needs PyTorch (and torchvision for --torchvision); run it once wherever they
are installed. Names are kept as they are, so torchvision's weights load into
aviary's models of the same name."""
import json
import struct
import sys

import torch

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "U8"}


def write(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        if t.dtype not in DTYPES:
            raise SystemExit("%s: dtype %s is not supported" % (name, t.dtype))
        b = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    __import__("os").replace(tmp, path)


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        raise SystemExit(__doc__)
    if args[0] == "--torchvision":
        import torchvision
        name, out = args[1], args[2]
        sd = torchvision.models.get_model(name, weights="DEFAULT").state_dict()
    else:
        src, out = args[0], args[1]
        obj = torch.load(src, map_location="cpu")
        key = args[args.index("--key") + 1] if "--key" in args else None
        if key:
            obj = obj[key]
        elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        elif isinstance(obj, torch.nn.Module):
            obj = obj.state_dict()
        sd = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items() if torch.is_tensor(v)}
    write(out, sd)
    print("wrote %d tensors to %s" % (len(sd), out))


if __name__ == "__main__":
    main()
