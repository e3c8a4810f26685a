#!/usr/bin/python3
"""Decodes a TensorBoard event file written by aviary.tensorboard with a real
protobuf decoder (protoc-generated code from tb_event.proto) and checks every
TFRecord's framing and both masked CRC-32Cs.

usage: tb_check.py EVENTFILE
prints one JSON object per line: {"wall_time", "step", "file_version"} or
{"step", "tag", "kind": "scalar"|"histo"|"image", ...}; exits non-zero with a
message on the first bad record."""
import json, os, struct, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def load_proto():
    out = tempfile.mkdtemp()
    subprocess.check_call(["protoc", "-I" + HERE, "--python_out=" + out, os.path.join(HERE, "tb_event.proto")])
    sys.path.insert(0, out)
    import tb_event_pb2
    return tb_event_pb2


def main():
    assert crc32c(b"123456789") == 0xE3069283, "crc32c self-test"
    pb = load_proto()
    data = open(sys.argv[1], "rb").read()
    pos, n = 0, 0
    while pos < len(data):
        if pos + 12 > len(data):
            sys.exit("record %d: truncated header at byte %d" % (n, pos))
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (lcrc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if lcrc != masked(header):
            sys.exit("record %d: bad length crc" % n)
        body = data[pos + 12:pos + 12 + length]
        if len(body) != length or pos + 16 + length > len(data):
            sys.exit("record %d: truncated data" % n)
        (dcrc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        if dcrc != masked(body):
            sys.exit("record %d: bad data crc" % n)
        pos += 16 + length
        ev = pb.Event()
        ev.ParseFromString(body)
        if ev.WhichOneof("what") == "file_version":
            print(json.dumps({"record": n, "wall_time": ev.wall_time, "step": ev.step, "file_version": ev.file_version}))
        elif ev.WhichOneof("what") == "summary":
            for v in ev.summary.value:
                kind = v.WhichOneof("value")
                rec = {"record": n, "wall_time": ev.wall_time, "step": ev.step, "tag": v.tag}
                if kind == "simple_value":
                    rec.update(kind="scalar", value=v.simple_value)
                elif kind == "histo":
                    h = v.histo
                    rec.update(kind="histo", min=h.min, max=h.max, num=h.num, sum=h.sum, sum_squares=h.sum_squares,
                               bucket_limit=list(h.bucket_limit), bucket=list(h.bucket))
                elif kind == "image":
                    im = v.image
                    rec.update(kind="image", height=im.height, width=im.width, colorspace=im.colorspace,
                               size=len(im.encoded_image_string), head=im.encoded_image_string[:8].hex())
                print(json.dumps(rec))
        else:
            sys.exit("record %d: unexpected event content" % n)
        n += 1
    print(json.dumps({"records": n}))


if __name__ == "__main__":
    main()
