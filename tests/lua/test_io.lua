-- aviary.save / aviary.load, and cross-checks against an independent
-- struct+json+torch reader/writer (tests/parity/safetensors_check.py).
local av = require "aviary"
local cjson = require "cjson"

-- located from this file rather than av_test.root, which is only right when
-- the runner is started by an absolute path
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local CHECK_SCRIPT = here .. "/../parity/safetensors_check.py"

local created = {}
local function tmp(suffix)
  local p = av_test.tmpname("_" .. suffix)
  created[#created + 1] = p
  return p
end
local function cleanup()
  for _, p in ipairs(created) do os.remove(p) end
  created = {}
end

local function read_bytes(p)
  local f = io.open(p, "rb")
  assert.truthy(f)
  local s = f:read("a")
  f:close()
  return s
end

local function write_bytes(p, s)
  local f = io.open(p, "wb")
  f:write(s)
  f:close()
end

local function flatten(x)
  local out = {}
  local function rec(v)
    if type(v) == "table" then
      for _, e in ipairs(v) do rec(e) end
    else
      out[#out + 1] = v
    end
  end
  rec(x:tolist())
  return out
end

local function sum(list)
  local s = 0
  for _, v in ipairs(list) do s = s + v end
  return s
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function assert_same_list(got, want, tol, what)
  assert.equal(#got, #want)
  for i = 1, #want do
    if math.abs(got[i] - want[i]) > (tol or 0) then
      error(string.format("%s: element %d is %.17g, expected %.17g", what or "list", i, got[i], want[i]), 2)
    end
  end
end

local function assert_same_tensor(got, want, name)
  assert.equal(got:dtype(), want:dtype())
  assert_same_list(got:size(), want:size(), 0, name .. " shape")
  assert_same_list(flatten(got), flatten(want), 0, name)
end

local function need_torch()
  if not av_test.have_torch() then
    skip(av_test.python_bin .. " cannot import torch (apt-get install python3-torch)")
  end
end

-- a mix of every dtype, shape kind and layout
local function sample()
  av.manual_seed(7)
  return {
    ["conv1.weight"] = av.randn(4, 3, 2, 2),
    ["fc.bias"] = av.randn(5, { dtype = "float64" }),
    labels = av.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = "int64" }),
    counts = av.tensor({ 7, -8, 2147483000 }, { dtype = "int32" }),
    image = av.tensor({ 0, 128, 255 }, { dtype = "uint8" }),
    half = av.tensor({ 0.5, -1.25, 3, 65504 }, { dtype = "float16" }),
    bf = av.tensor({ 1, -2.5, 1024, 0.0078125 }, { dtype = "bfloat16" }),
    empty = av.zeros(0, 3),
    scalar = av.tensor(3.5),
    transposed = av.tensor({ { 1, 2, 3, 4 }, { 5, 6, 7, 8 }, { 9, 10, 11, 12 } }):t(),
  }
end

describe("aviary.save / aviary.load", function()
  it("round-trips every dtype, empty, 0-d and transposed tensors", function()
    local p = tmp("roundtrip.safetensors")
    local src = sample()
    assert.truthy(not src.transposed:is_contiguous())
    av.save(p, src)
    local got, meta, names = av.load(p)
    assert.equal(next(meta), nil)
    assert.equal(#names, #sorted_keys(src))
    for _, name in ipairs(sorted_keys(src)) do
      assert.truthy(got[name])
      assert_same_tensor(got[name], src[name], name)
    end
    assert.equal(got.scalar:dim(), 0)
    assert.equal(got.scalar:item(), 3.5)
    assert_same_list(got.empty:size(), { 0, 3 })
    assert.truthy(got.transposed:is_contiguous())
    assert_same_list(flatten(got.transposed), { 1, 5, 9, 2, 6, 10, 3, 7, 11, 4, 8, 12 })
    cleanup()
  end)

  it("writes names sorted, so the same table always gives the same bytes", function()
    local p1, p2 = tmp("det1.safetensors"), tmp("det2.safetensors")
    local src = sample()
    av.save(p1, src, { b = "2", a = "1" })
    av.save(p2, src, { a = "1", b = "2" })
    assert.truthy(read_bytes(p1) == read_bytes(p2))
    local _, _, names = av.load(p1)
    local want = sorted_keys(src)
    for i, n in ipairs(want) do assert.equal(names[i], n) end
    cleanup()
  end)

  it("round-trips metadata, converting numbers like tostring", function()
    local p = tmp("meta.safetensors")
    av.save(p, { w = av.ones(2) }, { epoch = 3, lr = 0.5, big = 1e100, name = "run \"7\"\n\u{2713}", empty = "" })
    local got, meta = av.load(p)
    assert.equal(meta.epoch, "3")
    assert.equal(meta.lr, "0.5")
    assert.equal(meta.big, tostring(1e100))
    assert.equal(meta.name, "run \"7\"\n\u{2713}")
    assert.equal(meta.empty, "")
    assert_same_list(flatten(got.w), { 1, 1 })
    cleanup()
  end)

  it("saves an empty table and a metadata-only file", function()
    local p = tmp("nothing.safetensors")
    av.save(p, {})
    local got, meta, names = av.load(p)
    assert.equal(next(got), nil)
    assert.equal(next(meta), nil)
    assert.equal(#names, 0)
    av.save(p, {}, { note = "only metadata" })
    got, meta = av.load(p)
    assert.equal(next(got), nil)
    assert.equal(meta.note, "only metadata")
    cleanup()
  end)

  it("leaves no temporary file and overwrites in place", function()
    local p = tmp("atomic.safetensors")
    av.save(p, { x = av.ones(3) })
    av.save(p, { y = av.zeros(2) })
    local got = av.load(p)
    assert.equal(got.x, nil)
    assert_same_list(flatten(got.y), { 0, 0 })
    local listing = io.popen("ls -a '" .. p:match("^(.*)/") .. "'"):read("a")
    assert.equal(listing:find(p:match("[^/]*$") .. ".tmp.", 1, true), nil)
    cleanup()
  end)

  it("rejects bad arguments with messages naming the function and argument", function()
    local p = tmp("bad.safetensors")
    local x = av.ones(2)
    assert.error_matches(function() av.save(1, {}) end,
      "aviary.save: expected a file path (string) as argument 1, got number")
    assert.error_matches(function() av.save(p, 5) end,
      "aviary.save: expected a table of name -> tensor as argument 2, got number")
    assert.error_matches(function() av.save(p, x) end, "expected a table of name -> tensor as argument 2, got a tensor")
    assert.error_matches(function() av.save(p, { w = 1 }) end,
      "aviary.save: value for 'w' in argument 2 must be a tensor, got number")
    assert.error_matches(function() av.save(p, { x }) end, "tensor names must be strings, got number key 1")
    assert.error_matches(function() av.save(p, { w = x }, 5) end, "expected a metadata table of string -> string")
    assert.error_matches(function() av.save(p, { w = x }, { [1] = "a" }) end, "metadata keys must be strings")
    assert.error_matches(function() av.save(p, { w = x }, { cfg = {} }) end,
      "metadata value for key 'cfg' must be a string or a number, got table")
    assert.error_matches(function() av.save(p, { w = x }, { ok = true }) end,
      "metadata value for key 'ok' must be a string or a number, got boolean")
    assert.error_matches(function() av.save(p, { __metadata__ = x }) end, "reserved")
    assert.error_matches(function() av.save(p .. "/no/such/dir", { w = x }) end, "No such file or directory")
    assert.error_matches(function() av.load() end, "aviary.load: expected a file path (string) as argument 1, got no value")
    assert.error_matches(function() av.load({}) end, "got table")
    cleanup()
  end)

  it("reports corrupt and missing files through aviary.load", function()
    local p = tmp("corrupt.safetensors")
    assert.error_matches(function() av.load(p) end, "aviary.load: cannot open '" .. p .. "': No such file or directory")
    write_bytes(p, "abc")
    assert.error_matches(function() av.load(p) end, "file is 3 bytes, too short")
    write_bytes(p, string.pack("<I8", 1000) .. "{}")
    assert.error_matches(function() av.load(p) end, "header length 1000 is larger than the file")
    local h = '{"w":{"dtype":"F32","shape":[3,4],"data_offsets":[0,40]}}'
    write_bytes(p, string.pack("<I8", #h) .. h .. string.rep("\0", 48))
    assert.error_matches(function() av.load(p) end,
      "aviary.load: '" .. p .. "': tensor 'w' has shape 3x4 float32 = 48 bytes but data_offsets span 40")
    h = '{"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}'
    write_bytes(p, string.pack("<I8", #h) .. h .. string.rep("\0", 4))
    assert.error_matches(function() av.load(p) end, "tensor 'w' has unknown dtype 'Q7'")
    h = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    write_bytes(p, string.pack("<I8", #h) .. h .. string.rep("\0", 4))
    assert.error_matches(function() av.load(p) end, "header is not valid JSON")
    cleanup()
  end)
end)

describe("safetensors parity with an independent torch reader/writer", function()
  it("aviary's file reads back in Python with the same names, dtypes, shapes and values", function()
    need_torch()
    local p = tmp("for_python.safetensors")
    local src = sample()
    av.save(p, src, { format = "pt", epoch = 4 })
    local ok, out = av_test.python(CHECK_SCRIPT, "read", p)
    assert.truthy(ok, out)
    local py = cjson.decode(out)
    local names = sorted_keys(src)
    assert.equal(#py.names, #names)
    for i, name in ipairs(names) do
      assert.equal(py.names[i], name)
      local x, pt = src[name], py.tensors[name]
      assert.equal(pt.dtype, x:dtype())
      assert_same_list(pt.shape, x:size(), 0, name .. " shape")
      local values = flatten(x)
      assert_same_list(pt.values, values, 0, name)
      assert.near(pt.sum, sum(values), 1e-9 * (1 + math.abs(pt.sum)))
    end
    assert.equal(py.metadata.format, "pt")
    assert.equal(py.metadata.epoch, "4")
    cleanup()
  end)

  it("loads a file Python wrote from torch tensors, metadata and file order included", function()
    need_torch()
    local p = tmp("from_python.safetensors")
    local ok, out = av_test.python(CHECK_SCRIPT, "write", p)
    assert.truthy(ok, out)
    local py = cjson.decode(out)
    local got, meta, names = av.load(p)
    assert.equal(#names, #py.names)
    for i, name in ipairs(py.names) do
      assert.equal(names[i], name)
      local x, pt = got[name], py.tensors[name]
      assert.truthy(x)
      assert.equal(x:dtype(), pt.dtype)
      assert_same_list(x:size(), pt.shape, 0, name .. " shape")
      local values = flatten(x)
      assert_same_list(values, pt.values, 0, name)
      assert.near(sum(values), pt.sum, 1e-9 * (1 + math.abs(pt.sum)))
    end
    for k, v in pairs(py.metadata) do assert.equal(meta[k], v) end
    for k in pairs(meta) do assert.truthy(py.metadata[k]) end
    -- and the loaded tensors are ordinary tensors: save them again, Python still agrees
    local p2 = tmp("again.safetensors")
    av.save(p2, got, meta)
    local ok2, out2 = av_test.python(CHECK_SCRIPT, "read", p2)
    assert.truthy(ok2, out2)
    local py2 = cjson.decode(out2)
    for _, name in ipairs(py.names) do
      assert_same_list(py2.tensors[name].values, py.tensors[name].values, 0, name)
    end
    cleanup()
  end)
end)
