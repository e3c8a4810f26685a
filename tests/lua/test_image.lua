-- aviary.image: decoding (every photo in ../shared/photos and generated PNG
-- variants) against PIL, resizing against PIL's Image.resize, crop/flip
-- against torchvision, to_float against torchvision's normalize, encoding
-- round trips and the errors of bad files. All PIL/torch references come from
-- one python process (inputs and results through safetensors files).
local av = require "aviary"
local image = require "aviary.image"
local cjson = require "cjson"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."
local PHOTOS = ROOT .. "/../shared/photos"

local created = {}
local function tmp(suffix)
  local p = av_test.tmpname("_" .. suffix)
  created[#created + 1] = p
  return p
end
local function write_bytes(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end
local function read_bytes(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- max and mean absolute difference of two tensors of the same size
local function diff(a, b)
  local d = (a:double() - b:double()):abs()
  return d:max():item(), d:mean():item()
end
local function same_size(a, b)
  return table.concat(a:size(), "x") == table.concat(b:size(), "x")
end

-- ---- a small PNG writer (stored deflate blocks) for the PNG variants -----------------
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1) == 1 and (0xEDB88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[i] = c
end
local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = crc_table[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end
local function adler32(s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  return (b << 16) | a
end
local function chunk(kind, data)
  return string.pack(">I4", #data) .. kind .. data .. string.pack(">I4", crc32(kind .. data))
end
local function zlib_stored(raw)
  local out = {"\x78\x01"}
  local pos = 1
  repeat
    local piece = raw:sub(pos, pos + 65534)
    pos = pos + #piece
    local final = pos > #raw and 1 or 0
    out[#out + 1] = string.pack("<I1I2I2", final, #piece, (~#piece) & 0xFFFF) .. piece
  until pos > #raw
  out[#out + 1] = string.pack(">I4", adler32(raw))
  return table.concat(out)
end
-- rows: function(y) -> the row's bytes (without the filter byte)
local function make_png(w, h, depth, ctype, rows, extra)
  local raw = {}
  for y = 0, h - 1 do raw[#raw + 1] = "\0" .. rows(y) end
  return "\x89PNG\r\n\x1a\n" .. chunk("IHDR", string.pack(">I4I4BBBBB", w, h, depth, ctype, 0, 0, 0)) ..
    (extra or "") .. chunk("IDAT", zlib_stored(table.concat(raw))) .. chunk("IEND", "")
end
local function bytes(n, f)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = string.char(f(i) & 0xFF) end
  return table.concat(t)
end

local PNGS = {
  gray8 = make_png(37, 23, 8, 0, function(y) return bytes(37, function(x) return x * 7 + y * 3 end) end),
  gray1 = make_png(19, 5, 1, 0, function(y) return bytes(3, function(x) return 0xA5 ~ (y * 17 + x) end) end),
  gray16 = make_png(9, 4, 16, 0, function(y) return bytes(18, function(i) return i * 29 + y * 51 end) end),
  rgb8 = make_png(31, 17, 8, 2, function(y) return bytes(93, function(i) return i * 5 + y * 11 end) end),
  rgb16 = make_png(7, 6, 16, 2, function(y) return bytes(42, function(i) return i * 37 + y * 13 end) end),
  rgba8 = make_png(13, 11, 8, 6, function(y) return bytes(52, function(i) return i * 9 + y * 7 end) end),
  graya8 = make_png(12, 5, 8, 4, function(y) return bytes(24, function(i) return i * 21 + y end) end),
  palette = make_png(10, 6, 8, 3, function(y) return bytes(10, function(x) return (x + y) % 4 end) end,
    chunk("PLTE", "\255\0\0\0\255\0\0\0\255\20\40\60")),
  palette_trns = make_png(10, 6, 8, 3, function(y) return bytes(10, function(x) return (x * y) % 4 end) end,
    chunk("PLTE", "\255\0\0\0\255\0\0\0\255\20\40\60") .. chunk("tRNS", "\0\128")),
  one_px = make_png(1, 1, 8, 2, function() return "\10\200\30" end),
}

local photo_names = {}
for _, n in ipairs{"chicken.jpg", "chicken_444.jpg", "dog.jpg", "eagle.jpg", "eagle_cmyk.jpg", "eagle_gray.jpg",
                   "eagle_progressive.jpg", "giraffe.jpg", "giraffe_is_png.jpg", "horses.jpg", "person.jpg",
                   "person_exif_rot90.jpg"} do
  photo_names[#photo_names + 1] = n
end

-- ---- aviary's side, recorded as cases for one python run ------------------------------
local cases, inputs, mine = {}, {}, {}
local function case(id, spec, result, check)
  spec.id = id
  cases[#cases + 1] = {spec = spec, result = result, check = check}
end

local have_photos = io.open(PHOTOS .. "/eagle.jpg") ~= nil
if have_photos then io.close(io.open(PHOTOS .. "/eagle.jpg")) end

-- Decoding tolerances: PIL on Debian uses the same libjpeg-turbo with the same
-- (accurate integer) IDCT and fancy upsampling, so baseline and progressive
-- JPEGs decode identically; CMYK goes through PIL's cmyk2rgb rounding, which
-- ours reproduces. Asserted: max |diff| <= 1 level, mean <= 0.01.
local DECODE_MAX, DECODE_MEAN = 1, 0.01
if have_photos then
  for _, n in ipairs(photo_names) do
    local ok, t = pcall(image.load, PHOTOS .. "/" .. n)
    case("decode " .. n, {op = "load", path = PHOTOS .. "/" .. n, mode = "RGB"}, ok and t or tostring(t),
      {max = DECODE_MAX, mean = DECODE_MEAN})
  end
  local g = image.load(PHOTOS .. "/eagle_gray.jpg", {channels = 1})
  case("decode eagle_gray.jpg channels=1", {op = "load", path = PHOTOS .. "/eagle_gray.jpg", mode = "L"}, g,
    {max = 0, mean = 0})
  for _, n in ipairs{"eagle.jpg", "eagle_cmyk.jpg", "giraffe_is_png.jpg", "chicken_444.jpg"} do
    case("decode " .. n .. " channels=1 (PIL's convert('L'))", {op = "load", path = PHOTOS .. "/" .. n, mode = "L"},
      image.load(PHOTOS .. "/" .. n, {channels = 1}), {max = DECODE_MAX, mean = DECODE_MEAN})
  end
  local g0 = image.load(PHOTOS .. "/eagle_gray.jpg", {channels = 0})
  case("decode eagle_gray.jpg channels=0 (as stored)", {op = "load", path = PHOTOS .. "/eagle_gray.jpg", mode = "L"},
    g0, {max = 0, mean = 0})
end

for name, bytes_ in pairs(PNGS) do
  local p = tmp(name .. ".png")
  write_bytes(p, bytes_)
  local ok, t = pcall(image.load, p)
  -- 16-bit gray: PIL's I;16 -> RGB clips values above 255; aviary keeps the high byte
  -- (as for 16-bit RGB, where PIL does the same), so the reference is the high byte
  case("decode png " .. name, {op = name == "gray16" and "load16" or "load", path = p, mode = "RGB"}, ok and t or tostring(t), {max = 0, mean = 0})
  if name ~= "gray16" then
    case("decode png " .. name .. " channels=1", {op = "load", path = p, mode = "L"}, image.load(p, {channels = 1}),
      {max = 0, mean = 0})
  end
  if name == "rgba8" or name == "palette_trns" then
    local t4 = image.load(p, {channels = 4})
    case("decode png " .. name .. " channels=4", {op = "load", path = p, mode = "RGBA"}, t4, {max = 0, mean = 0})
  end
end

-- resizing: inputs are aviary's own decodes, so only the resampling is compared.
-- Bit-exact with PIL (same fixed-point arithmetic): asserted max 0.
local function resize_cases(tag, img)
  local name = "in_" .. tag
  inputs[name] = img
  local h, w = img:size(2), img:size(3)
  local sizes = {{168, 224}, {math.floor(h * 1.7), math.floor(w * 1.3)}, {h // 3, w // 5}, {1, 1}, {h, w // 2}}
  for _, interp in ipairs{"bilinear", "bicubic", "nearest"} do
    for _, s in ipairs(sizes) do
      local r = image.resize(img, s, {interpolation = interp})
      case(("resize %s %s %dx%d -> %dx%d"):format(tag, interp, w, h, s[2], s[1]),
        {op = "resize", input = name, w = s[2], h = s[1], filter = interp}, r, {max = 0, mean = 0})
    end
  end
  -- fractional boxes (RandomResizedCrop), as PIL's resize(box=...)
  for _, b in ipairs{{w * 0.2 + 0.5, h * 0.25 + 0.25, w * 0.5 + 0.75, h * 0.6 + 0.5}, {0, 0, w / 3, h / 2},
                     {w / 4, h / 5, w * 0.7, h * 0.6}} do
    local left, top, bw, bh = b[1], b[2], b[3], b[4]
    for _, interp in ipairs{"bilinear", "bicubic"} do
      local r = image.resized_crop(img, top, left, bh, bw, {96, 128}, {interpolation = interp})
      case(("resized_crop %s %s box %.2f,%.2f,%.2f,%.2f"):format(tag, interp, left, top, bw, bh),
        {op = "resize", input = name, w = 128, h = 96, filter = interp, box = {left, top, left + bw, top + bh}}, r,
        {max = 0, mean = 0})
    end
  end
end

av.manual_seed(7)
local rnd = (av.rand(3, 37, 53) * 255):to("uint8")
resize_cases("random37x53", rnd)
if have_photos then
  resize_cases("eagle", image.load(PHOTOS .. "/eagle.jpg"))
  resize_cases("eagle_gray", image.load(PHOTOS .. "/eagle_gray.jpg", {channels = 1}))
  -- the brief's 500x375 -> 224x168 case, from a crop of the dog
  local dog = image.crop(image.load(PHOTOS .. "/dog.jpg"), 0, 0, 375, 500)
  inputs.in_dog = dog
  for _, interp in ipairs{"bilinear", "bicubic"} do
    case("resize dog 500x375 -> 224x168 " .. interp, {op = "resize", input = "in_dog", w = 224, h = 168, filter = interp},
      image.resize(dog, {168, 224}, {interpolation = interp}), {max = 0, mean = 0})
  end
  inputs.in_dog_smaller = dog
  case("resize dog smaller edge 256 (torchvision Resize(256))",
    {op = "tv_resize", input = "in_dog_smaller", size = 256}, image.resize(dog, 256), {max = 0, mean = 0})
  case("center_crop dog 224 (torchvision CenterCrop)", {op = "tv_center_crop", input = "in_dog", size = 224},
    image.center_crop(dog, 224), {max = 0, mean = 0})
end
local tiny = av.tensor({{{7}}, {{100}}, {{250}}}, {dtype = "uint8"})
inputs.in_tiny = tiny
for _, interp in ipairs{"bilinear", "bicubic", "nearest"} do
  case("resize 1x1 -> 5x3 " .. interp, {op = "resize", input = "in_tiny", w = 5, h = 3, filter = interp},
    image.resize(tiny, {3, 5}, {interpolation = interp}), {max = 0, mean = 0})
end

-- crop / flip: exact against torchvision on tensors (out-of-bounds crops pad with 0)
inputs.in_rnd = rnd
for _, c in ipairs{{3, 5, 20, 30}, {0, 0, 37, 53}, {-4, 50, 10, 10}, {30, -2, 12, 8}} do
  case(("crop top=%d left=%d %dx%d"):format(c[1], c[2], c[3], c[4]),
    {op = "crop", input = "in_rnd", top = c[1], left = c[2], h = c[3], w = c[4]},
    image.crop(rnd, c[1], c[2], c[3], c[4]), {max = 0, mean = 0})
end
case("hflip", {op = "hflip", input = "in_rnd"}, image.hflip(rnd), {max = 0, mean = 0})
case("vflip", {op = "vflip", input = "in_rnd"}, image.vflip(rnd), {max = 0, mean = 0})

-- to_float: bit-exact with to_tensor (x / 255) + normalize
case("to_float imagenet", {op = "normalize", input = "in_rnd", mean = image.IMAGENET_MEAN, std = image.IMAGENET_STD},
  image.to_float(rnd, {mean = image.IMAGENET_MEAN, std = image.IMAGENET_STD}), {max = 0, mean = 0})
case("to_float plain", {op = "normalize", input = "in_rnd"}, image.to_float(rnd), {max = 0, mean = 0})

-- ---- the python side ------------------------------------------------------------------
local PY = [==[
import json, sys
sys.path.insert(0, sys.argv[3])
import numpy as np
import torch
import st
from PIL import Image
import torchvision.transforms.functional as F

inp, meta = st.load(sys.argv[1])
cases = json.loads(meta["cases"])
FILT = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
def chw(im):
    a = torch.from_numpy(np.array(im))
    return a.unsqueeze(0) if a.ndim == 2 else a.permute(2, 0, 1).contiguous()
def pil(t):
    a = t.permute(1, 2, 0).numpy()
    return Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
out, errors = {}, {}
for c in cases:
    try:
        op = c["op"]
        x = inp.get(c.get("input", ""))
        if op == "load16":
            a = np.array(Image.open(c["path"])).astype(np.int64) >> 8
            r = torch.from_numpy(a.astype(np.uint8)).unsqueeze(0).expand(3, -1, -1).contiguous()
        elif op == "load":
            r = chw(Image.open(c["path"]).convert(c["mode"]))
        elif op == "resize":
            box = tuple(c["box"]) if "box" in c else None
            r = chw(pil(x).resize((c["w"], c["h"]), FILT[c["filter"]], box=box))
        elif op == "tv_resize":
            r = chw(F.resize(pil(x), c["size"]))
        elif op == "tv_center_crop":
            r = chw(F.center_crop(pil(x), c["size"]))
        elif op == "crop":
            r = F.crop(x, c["top"], c["left"], c["h"], c["w"])
        elif op == "hflip":
            r = F.hflip(x)
        elif op == "vflip":
            r = F.vflip(x)
        elif op == "normalize":
            r = x.float().div(255)
            if "mean" in c:
                r = F.normalize(r, c["mean"], c["std"])
        else:
            raise ValueError("unknown op " + op)
        out[c["id"]] = r.contiguous()
    except Exception as e:
        errors[c["id"]] = repr(e)
st.save(sys.argv[2], out, {"errors": json.dumps(errors)})
]==]

local refs, errors, py_err = {}, {}, nil
if av_test.have_torch() then
  local meta = {}
  for _, c in ipairs(cases) do meta[#meta + 1] = c.spec end
  local script, fin, fout = tmp("image_ref.py"), tmp("in.safetensors"), tmp("out.safetensors")
  write_bytes(script, PY)
  av.save(fin, inputs, {cases = cjson.encode(meta)})
  local ok, out = av_test.python(script, fin, fout, ROOT .. "/tests/parity")
  if ok then
    local m
    refs, m = av.load(fout)
    errors = cjson.decode(m.errors or "{}")
  else
    py_err = out
  end
end

describe("image vs PIL/torchvision", function()
  for _, c in ipairs(cases) do
    it(c.spec.id, function()
      if not av_test.have_torch() then skip("python3-torch not installed") end
      if py_err then error("reference script failed: " .. py_err) end
      if errors[c.spec.id] then error("python raised: " .. errors[c.spec.id]) end
      if type(c.result) == "string" then error("aviary raised: " .. c.result) end
      local ref = refs[c.spec.id]
      assert.truthy(ref, "no reference")
      assert.truthy(same_size(c.result, ref), ("size %s vs reference %s"):format(table.concat(c.result:size(), "x"),
        table.concat(ref:size(), "x")))
      assert.equal(c.result:dtype(), ref:dtype())
      local mx, mean = diff(c.result, ref)
      if mx > c.check.max or mean > c.check.mean then
        error(("max |diff| %g (allowed %g), mean %g (allowed %g)"):format(mx, c.check.max, mean, c.check.mean))
      end
    end)
  end
end)

-- ---- no reference needed ---------------------------------------------------------------
describe("image decoding", function()
  it("probe reads sizes and stored channels", function()
    for name, want in pairs{gray8 = {37, 23, 1}, rgba8 = {13, 11, 4}, palette = {10, 6, 3}, graya8 = {12, 5, 2}} do
      local p = tmp(name .. "_probe.png")
      write_bytes(p, PNGS[name])
      local w, h, c = image.probe(p)
      assert.same({w, h, c}, want, name)
    end
    if not have_photos then return end
    assert.same({image.probe(PHOTOS .. "/eagle.jpg")}, {773, 512, 3})
    assert.same({image.probe(PHOTOS .. "/eagle_cmyk.jpg")}, {773, 512, 4})
    assert.same({image.probe(PHOTOS .. "/eagle_gray.jpg")}, {773, 512, 1})
    assert.same({image.probe(PHOTOS .. "/giraffe_is_png.jpg")}, {image.load(PHOTOS .. "/giraffe_is_png.jpg"):size(3),
      image.load(PHOTOS .. "/giraffe_is_png.jpg"):size(2), 3})
  end)

  it("decode from a string equals load", function()
    if not have_photos then skip("no photos") end
    local p = PHOTOS .. "/chicken.jpg"
    local a, b = image.load(p), image.decode(read_bytes(p))
    assert.equal(diff(a, b), 0)
  end)

  it("DCT scaling keeps at least min_size and the same content", function()
    if not have_photos then skip("no photos") end
    local p = PHOTOS .. "/eagle.jpg" -- 773 x 512
    local full = image.load(p)
    for _, ms in ipairs{{200, 150}, {100, 100}, {773, 512}, {400, 10}, {1, 1}} do
      local t = image.load(p, {min_size = ms})
      local w, h = t:size(3), t:size(2)
      assert.truthy(w >= ms[1] and h >= ms[2], ("%dx%d for min %dx%d"):format(w, h, ms[1], ms[2]))
      assert.truthy(w <= 773 and h <= 512)
      local _, mean = diff(t, image.resize(full, {h, w}))
      assert.truthy(mean < 6, ("mean |diff| %g vs a resized full decode at %dx%d"):format(mean, w, h))
    end
    -- only 1/2, 1/4 and 1/8 are used: 1/2 (387 x 256) is the smallest keeping 200 x 150
    local t = image.load(p, {min_size = {200, 150}})
    assert.same(t:size(), {3, 256, 387})
    assert.same(image.load(p, {min_size = {100, 100}}):size(), {3, 128, 194})
    assert.same(image.load(p, {min_size = {400, 100}}):size(), {3, 512, 773})
    assert.same(image.load(p, {min_size = {1, 1}}):size(), {3, 64, 97})
    -- PNGs ignore min_size (no cheap reduced decode)
    assert.same(image.load(PHOTOS .. "/giraffe_is_png.jpg", {min_size = {10, 10}}):size(),
      image.load(PHOTOS .. "/giraffe_is_png.jpg"):size())
  end)

  it("channels option", function()
    if not have_photos then skip("no photos") end
    assert.same(image.load(PHOTOS .. "/eagle.jpg", {channels = 1}):size(), {1, 512, 773})
    assert.same(image.load(PHOTOS .. "/eagle.jpg", {channels = 4}):size(), {4, 512, 773})
    assert.same(image.load(PHOTOS .. "/eagle.jpg", {channels = 0}):size(), {3, 512, 773})
    assert.same(image.load(PHOTOS .. "/eagle_cmyk.jpg", {channels = 1}):size(), {1, 512, 773})
    assert.error_matches(function() image.load(PHOTOS .. "/eagle.jpg", {channels = 2}) end, "channels must be")
  end)

  it("bad files give clear errors naming the file", function()
    local z = tmp("zero.jpg")
    write_bytes(z, "")
    assert.error_matches(function() image.load(z) end, "empty file")
    assert.error_matches(function() image.load(z) end, z)
    assert.error_matches(function() image.probe(z) end, "empty file")
    local txt = tmp("text.jpg")
    write_bytes(txt, "this is not an image at all")
    assert.error_matches(function() image.load(txt) end, "not a JPEG or PNG")
    assert.error_matches(function() image.probe(txt) end, "not a JPEG or PNG")
    assert.error_matches(function() image.load(tmp("missing.jpg")) end, "cannot open image")
    if have_photos then
      local tr = PHOTOS .. "/dog_truncated.jpg"
      assert.error_matches(function() image.load(tr) end, "truncated or corrupt JPEG")
      assert.error_matches(function() image.load(tr) end, tr)
      assert.error_matches(function() image.decode(read_bytes(tr)) end, "truncated or corrupt JPEG")
      -- cut inside the header
      local hdr = tmp("header_cut.jpg")
      write_bytes(hdr, read_bytes(PHOTOS .. "/dog.jpg"):sub(1, 100))
      assert.error_matches(function() image.load(hdr) end, "truncated or corrupt JPEG")
    end
    local pt = tmp("png_cut.png")
    write_bytes(pt, PNGS.rgb8:sub(1, 60))
    assert.error_matches(function() image.load(pt) end, "truncated or corrupt PNG")
    local bad = PNGS.rgb8:sub(1, 40) .. "\0\0\0\0" .. PNGS.rgb8:sub(45) -- corrupt IDAT
    local pb = tmp("png_bad.png")
    write_bytes(pb, bad)
    assert.error_matches(function() image.load(pb) end, "PNG")
  end)

  it("images declaring more than max_pixels are refused before allocating", function()
    -- a JPEG header declaring 30000 x 30000: SOI, APP0, SOF0 and nothing else
    local jp = tmp("huge.jpg")
    write_bytes(jp, "\xFF\xD8" .. "\xFF\xE0\0\16JFIF\0\1\1\0\0\1\0\1\0\0" ..
      "\xFF\xC0\0\17\8" .. string.pack(">I2I2", 30000, 30000) .. "\3\1\34\0\2\17\1\3\17\1")
    assert.error_matches(function() image.load(jp) end, "30000x30000")
    assert.error_matches(function() image.load(jp) end, "178956970")
    assert.error_matches(function() image.load(jp) end, jp)
    assert.same({image.probe(jp)}, {30000, 30000, 3})
    -- a PNG IHDR declaring 30000 x 30000
    local pp = tmp("huge.png")
    write_bytes(pp, "\x89PNG\r\n\x1a\n" .. chunk("IHDR", string.pack(">I4I4BBBBB", 30000, 30000, 8, 2, 0, 0, 0)) ..
      chunk("IEND", ""))
    assert.error_matches(function() image.load(pp) end, "30000x30000")
    assert.error_matches(function() image.load(pp) end, "max_pixels")
    -- a custom limit on a real file
    if have_photos then
      assert.error_matches(function() image.load(PHOTOS .. "/eagle.jpg", {max_pixels = 1000}) end, "773x512")
      assert.same(image.load(PHOTOS .. "/eagle.jpg", {max_pixels = 773 * 512}):size(), {3, 512, 773})
    end
  end)

  it("1x1 images", function()
    local p = tmp("one.png")
    write_bytes(p, PNGS.one_px)
    local t = image.load(p)
    assert.same(t:size(), {3, 1, 1})
    assert.same(t:reshape(-1):tolist(), {10, 200, 30})
    local j = tmp("one.jpg")
    image.save(t, j, {quality = 100})
    local u = image.load(j)
    assert.same(u:size(), {3, 1, 1})
    local mx = diff(t, u)
    assert.truthy(mx <= 8, "1x1 JPEG round trip max diff " .. mx)
  end)
end)

describe("image encoding", function()
  local function no_temp_left(p)
    local dir, base = p:match("^(.*)/([^/]*)$")
    local h = io.popen(("ls -a '%s'"):format(dir))
    local listing = h:read("a")
    h:close()
    assert.falsy(listing:find(base .. ".tmp", 1, true), "temporary file left behind")
  end

  it("PNG round trip is exact (gray, RGB, RGBA)", function()
    for _, c in ipairs{1, 3, 4} do
      local t = (av.rand(c, 29, 41) * 255):to("uint8")
      local p = tmp(("rt%d.png"):format(c))
      image.save(t, p)
      no_temp_left(p)
      local u = image.load(p, {channels = c})
      assert.equal(diff(t, u), 0)
      local w, h, cc = image.probe(p)
      assert.same({w, h, cc}, {41, 29, c})
    end
  end)

  it("JPEG round trip is close", function()
    if not have_photos then skip("no photos") end
    local t = image.load(PHOTOS .. "/eagle.jpg")
    local p = tmp("rt.jpg")
    image.save(t, p, {quality = 95})
    no_temp_left(p)
    local u = image.load(p)
    local _, mean = diff(t, u)
    assert.truthy(mean < 2.5, "mean |diff| " .. mean)
    local p2 = tmp("rt_q30.JPEG")
    image.save(t, p2, {quality = 30})
    assert.truthy(#read_bytes(p2) < #read_bytes(p))
    local g = image.load(PHOTOS .. "/eagle_gray.jpg", {channels = 1})
    local pg = tmp("rt_gray.jpg")
    image.save(g, pg)
    assert.same({image.probe(pg)}, {773, 512, 1})
  end)

  it("float images are saved rounded from [0, 1]", function()
    local f = av.tensor({{{0, 0.5, 1.2}}, {{-1, 0.25, 1}}, {{0.001, 0.999, 0.5}}})
    local p = tmp("float.png")
    image.save(f, p)
    assert.same(image.load(p):reshape(-1):tolist(), {0, 128, 255, 0, 64, 255, 0, 255, 128})
  end)

  it("bad arguments", function()
    local t = (av.rand(3, 4, 4) * 255):to("uint8")
    assert.error_matches(function() image.save(t, tmp("x.bmp")) end, "unknown image extension")
    assert.error_matches(function() image.save(t, tmp("x.jpg"), {quality = 0}) end, "quality")
    assert.error_matches(function() image.save(t, tmp("x.jpg"), {qualty = 50}) end, "unknown option 'qualty'")
    assert.error_matches(function() image.save(t, "/nonexistent-dir/x.png") end, "cannot write")
    assert.error_matches(function() image.save(av.zeros(2, 4, 4), tmp("x.png")) end, "C = 1, 3 or 4")
  end)
end)

describe("image transforms", function()
  local t = (av.rand(3, 12, 17) * 255):to("uint8")
  it("bad arguments", function()
    assert.error_matches(function() image.resize(t, {0, 5}) end, "must be >= 1")
    assert.error_matches(function() image.resize(t, 8, {interpolation = "lanczos"}) end, "interpolation must be")
    assert.error_matches(function() image.resize(av.zeros(3, 4, 4), 2) end, "uint8")
    assert.error_matches(function() image.resize(42, 2) end, "expected an image")
    assert.error_matches(function() image.crop(t, 0, 0, 0, 4) end, "height")
    assert.error_matches(function() image.to_float(t, {mean = {0.5}}) end, "needs 3 values")
    assert.error_matches(function() image.to_float(t, {mean = {0, 0, 0}, std = {1, 0, 1}}) end, "std[2] is 0")
    assert.error_matches(function() image.resized_crop(t, 0, 0, -1, 4, 8) end, "positive")
  end)
  it("resize to the same size is a copy; non-contiguous inputs work", function()
    assert.equal(diff(image.resize(t, {12, 17}), t), 0)
    local tt = t:transpose(2, 3) -- 3 x 17 x 12 view
    assert.equal(diff(image.hflip(tt), image.hflip(tt:contiguous())), 0)
  end)
  it("resized_crop with a box outside the image pads with zeros", function()
    local r = image.resized_crop(t, -4, -4, 8, 8, 8)
    assert.same(r:size(), {3, 8, 8})
    assert.equal(r:narrow(2, 1, 4):narrow(3, 1, 4):double():max():item(), 0)
  end)
  it("make_grid and draw_box forward to aviary.draw", function()
    assert.equal(type(image.make_grid), "function")
    assert.equal(type(image.draw_box), "function")
  end)
end)

for _, p in ipairs(created) do os.remove(p) end
