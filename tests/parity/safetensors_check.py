#!/usr/bin/python3
"""Independent safetensors reader/writer for cross-checking aviary.

Uses only struct + json + torch (torch.frombuffer), never the safetensors
package, so a bug shared by aviary and that package cannot hide.

  safetensors_check.py read PATH    check PATH strictly, print its contents as JSON
  safetensors_check.py write PATH   write a file from torch tensors, print its contents as JSON

The printed JSON is {"names": [...file order...], "tensors": {name: {"dtype",
"shape", "sum", "values"}}, "metadata": {...}} with aviary's dtype names and
values flattened row-major as floats.
"""
import json
import struct
import sys

import torch

CODES = {
    "F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32,
    "U8": torch.uint8, "BOOL": torch.bool, "F16": torch.float16, "BF16": torch.bfloat16,
}
CODE_OF = {dt: code for code, dt in CODES.items()}
AVIARY_NAME = {
    torch.float32: "float32", torch.float64: "float64", torch.int64: "int64", torch.int32: "int32",
    torch.uint8: "uint8", torch.bool: "uint8", torch.float16: "float16", torch.bfloat16: "bfloat16",
}


def fail(msg):
    print(f"safetensors_check: {msg}", file=sys.stderr)
    sys.exit(1)


def describe(names, tensors, metadata):
    out = {"names": names, "tensors": {}, "metadata": metadata}
    for name in names:
        t = tensors[name]
        flat = t.reshape(-1).to(torch.float64)
        out["tensors"][name] = {
            "dtype": AVIARY_NAME[t.dtype],
            "shape": list(t.shape),
            "sum": float(flat.sum()),
            "values": [float(v) for v in flat.tolist()],
        }
    return out


def read(path):
    """Reads with the checks the reference Rust implementation applies, so a
    file that passes here also loads with the safetensors package."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        fail("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        fail(f"header length {n} beyond the file")
    if (8 + n) % 8 != 0:
        fail(f"data section starts at {8 + n}, not a multiple of 8")
    text = raw[8:8 + n].decode("utf-8")
    if not text.startswith("{"):
        fail("header does not start with '{'")
    header = json.loads(text)
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    if not all(isinstance(v, str) for v in metadata.values()):
        fail("metadata values must be strings")
    names = list(header.keys())
    # the data must be covered exactly: sorted ranges, no holes, no overlap
    spans = sorted((e["data_offsets"][0], e["data_offsets"][1], k) for k, e in header.items())
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            fail(f"tensor {name!r} begins at {begin}, expected {pos} (hole or overlap)")
        pos = end
    if pos != len(data):
        fail(f"tensors cover {pos} bytes of a {len(data)}-byte data section")
    tensors = {}
    for name, e in header.items():
        dtype = CODES[e["dtype"]]
        begin, end = e["data_offsets"]
        shape = e["shape"]
        if begin == end:
            t = torch.empty(shape, dtype=dtype)
        else:
            t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(shape)
        tensors[name] = t
    return describe(names, tensors, metadata)


def sample_tensors():
    g = torch.Generator().manual_seed(1234)
    return {
        # deliberately not alphabetical: file order must survive
        "conv1.weight": torch.randn(4, 3, 2, 2, generator=g),
        "fc.bias": torch.randn(5, generator=g).double(),
        "layer1.0.bn1.num_batches_tracked": torch.tensor(17, dtype=torch.int64),
        "labels": torch.tensor([[1, -2, 3], [-4, 5, 2147483000]], dtype=torch.int32),
        "image": torch.arange(0, 250, 10, dtype=torch.uint8).reshape(5, 5),
        "half": torch.tensor([0.5, -1.25, 3.0, 65504.0], dtype=torch.float16),
        "bf": torch.tensor([[1.0, -2.5], [1024.0, 0.0078125]], dtype=torch.bfloat16),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.empty(0, 3),
        # written from a transposed view: Python writes it row-major too
        "big.transposed": torch.arange(24, dtype=torch.int64).reshape(4, 6).t(),
        "long": torch.tensor([-(2 ** 53), 2 ** 53 - 1, 0], dtype=torch.int64),
    }


def write(path):
    tensors = sample_tensors()
    metadata = {"format": "pt", "note": "unicode \u2713 and \"quotes\"\nnewline", "epoch": "7", "": "empty key"}
    header = {"__metadata__": metadata}
    chunks = []
    offset = 0
    for name, t in tensors.items():
        blob = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": CODE_OF[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    text = json.dumps(header, ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in chunks:
            f.write(blob)
    return describe(list(tensors.keys()), tensors, metadata)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("read", "write"):
        fail(__doc__)
    result = read(sys.argv[2]) if sys.argv[1] == "read" else write(sys.argv[2])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
