-- av._onnx: the ONNX file layer (runtime/onnx/onnx_io.c, lua/l_onnx.c). Round trips checked by
-- the onnx package's checker (python3-onnx) and run in ONNX Runtime (tools/node/ort_run.js), a model
-- exported by torch.onnx, and files that must be refused with a clear message.
local av = require "aviary"
local F = require "aviary.nn.functional"
local cjson = require "cjson"
local O = av._onnx

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local ROOT = here .. "/../.."
local ORT_RUN = ROOT .. "/tools/node/ort_run.js"

local created = {}
local function tmp(suffix)
  local p = av_test.tmpname("_" .. suffix)
  created[#created + 1] = p
  return p
end
local function cleanup()
  for i = #created, 1, -1 do os.remove(created[i]) end
  created = {}
end

local function read_bytes(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function write_bytes(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end
local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- python with the onnx package (Debian's python3-onnx); skips the test without it
local onnx_ok
local function need_onnx()
  if onnx_ok == nil then
    onnx_ok = os.execute(av_test.python_bin .. " -c 'import onnx' >/dev/null 2>&1") == true
  end
  if not onnx_ok then skip("python3-onnx is not installed") end
end
local function python(code, ...)
  local script = tmp("script.py")
  write_bytes(script, code)
  local ok, out = av_test.python(script, ...)
  assert.truthy(ok, "python failed:\n" .. out)
  return out
end

local ort_ok
local function need_ort()
  if ort_ok == nil then
    ort_ok = os.execute("command -v node >/dev/null 2>&1") == true and
      io.open(ROOT .. "/tools/node/node_modules/onnxruntime-node/package.json") ~= nil
  end
  if not ort_ok then skip("node or onnxruntime-node is missing (make test-deps)") end
end
-- runs ort_run.js; returns ok, combined output
local function ort_run(model, inputs, outputs, extra)
  local cmd = ("node %s %s %s %s %s 2>&1"):format(sh_quote(ORT_RUN), sh_quote(model), sh_quote(inputs),
    sh_quote(outputs), extra or "")
  local p = io.popen(cmd, "r")
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

-- input -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> logits
local function tiny_net()
  av.manual_seed(7)
  local P = {
    conv_w = av.randn(4, 3, 3, 3) * 0.3, conv_b = av.randn(4) * 0.1,
    fc_w = av.randn(5, 4) * 0.5, fc_b = av.randn(5) * 0.1,
  }
  local m = {
    ir_version = 8, producer_name = "aviary-test", producer_version = "0.1", domain = "", model_version = 3,
    doc_string = "tiny net",
    opset_import = {{domain = "", version = 17}},
    metadata_props = {{key = "classes", value = "a,b,c,d,e"}, {key = "author", value = "tests"}},
    graph = {
      name = "tiny", doc_string = "",
      node = {
        {op_type = "Conv", name = "conv1", domain = "", input = {"input", "conv1.weight", "conv1.bias"}, output = {"c1"},
         attribute = {{name = "kernel_shape", type = "INTS", ints = {3, 3}},
                      {name = "pads", type = "INTS", ints = {1, 1, 1, 1}},
                      {name = "strides", type = "INTS", ints = {1, 1}}}},
        {op_type = "Relu", name = "relu1", input = {"c1"}, output = {"r1"}, attribute = {}},
        {op_type = "GlobalAveragePool", name = "gap", input = {"r1"}, output = {"g1"}},
        {op_type = "Flatten", name = "flat", input = {"g1"}, output = {"f1"},
         attribute = {{name = "axis", type = "INT", i = 1}}},
        {op_type = "Gemm", name = "fc", input = {"f1", "fc.weight", "fc.bias"}, output = {"logits"},
         attribute = {{name = "alpha", type = "FLOAT", f = 1.0}, {name = "beta", type = "FLOAT", f = 1.0},
                      {name = "transB", type = "INT", i = 1}}},
      },
      initializer = {
        {name = "conv1.weight", tensor = P.conv_w}, {name = "conv1.bias", tensor = P.conv_b},
        {name = "fc.weight", tensor = P.fc_w}, {name = "fc.bias", tensor = P.fc_b},
      },
      input = {{name = "input", elem_type = O.ELEM.FLOAT, shape = {"batch", 3, 8, 8}}},
      output = {{name = "logits", elem_type = O.ELEM.FLOAT, shape = {"batch", 5}}},
      value_info = {{name = "c1", elem_type = O.ELEM.FLOAT, shape = {"batch", 4, 8, 8}},
                    {name = "f1", elem_type = O.ELEM.FLOAT, shape = {false, 4}}},
    },
  }
  local function forward(x)
    local y = F.relu(F.conv2d(x, P.conv_w, P.conv_b, {padding = 1}))
    y = F.adaptive_avg_pool2d(y, 1):flatten(2)
    return F.linear(y, P.fc_w, P.fc_b)
  end
  return m, forward, P
end

local function tensors_equal(a, b, msg)
  assert.equal(a:dtype(), b:dtype(), msg)
  assert.same(a:size(), b:size(), msg)
  if a:numel() > 0 then assert.truthy(a:double():eq(b:double()):all(), (msg or "") .. ": values differ") end
end

describe("round trip", function()
  it("writes a model the onnx checker accepts and reads it back equal", function()
    local m, _, P = tiny_net()
    local path = tmp("tiny.onnx")
    assert.equal(O.write(path, m), path)
    if onnx_ok ~= false and os.execute(av_test.python_bin .. " -c 'import onnx' >/dev/null 2>&1") == true then
      local out = python([[
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
print(m.ir_version, m.opset_import[0].version, len(m.graph.initializer), m.graph.node[0].op_type,
      m.graph.input[0].type.tensor_type.shape.dim[0].dim_param, m.metadata_props[0].value)
]], path)
      assert.equal(out, "8 17 4 Conv batch a,b,c,d,e\n")
    end
    local r = O.read(path)
    assert.equal(r.ir_version, 8)
    assert.equal(r.producer_name, "aviary-test")
    assert.equal(r.producer_version, "0.1")
    assert.equal(r.model_version, 3)
    assert.equal(r.doc_string, "tiny net")
    assert.same(r.opset_import, {{domain = "", version = 17}})
    assert.same(r.metadata_props, m.metadata_props)
    local g = r.graph
    assert.equal(g.name, "tiny")
    assert.equal(#g.node, 5)
    assert.same(g.node[1].input, {"input", "conv1.weight", "conv1.bias"})
    assert.same(g.node[1].output, {"c1"})
    assert.equal(g.node[1].name, "conv1")
    assert.same(g.node[1].attribute[1], {name = "kernel_shape", type = "INTS", ints = {3, 3}})
    assert.same(g.node[2].attribute, {})
    assert.same(g.node[4].attribute[1], {name = "axis", type = "INT", i = 1})
    assert.same(g.node[5].attribute[3], {name = "transB", type = "INT", i = 1})
    assert.equal(g.node[5].attribute[1].type, "FLOAT")
    assert.equal(g.node[5].attribute[1].f, 1.0)
    assert.equal(#g.initializer, 4)
    local names = {"conv1.weight", "conv1.bias", "fc.weight", "fc.bias"}
    local src = {P.conv_w, P.conv_b, P.fc_w, P.fc_b}
    for i, init in ipairs(g.initializer) do
      assert.equal(init.name, names[i])
      assert.equal(init.elem_type, O.ELEM.FLOAT)
      tensors_equal(init.tensor, src[i], names[i])
    end
    assert.same(g.input, {{name = "input", elem_type = 1, shape = {"batch", 3, 8, 8}}})
    assert.same(g.output, {{name = "logits", elem_type = 1, shape = {"batch", 5}}})
    assert.same(g.value_info[2], {name = "f1", elem_type = 1, shape = {false, 4}})
    -- encode gives the same bytes as the file, decode the same table
    local bytes = O.encode(m)
    assert.equal(bytes, read_bytes(path))
    local d = O.decode(bytes)
    assert.same(d.graph.node[1].attribute, g.node[1].attribute)
    tensors_equal(d.graph.initializer[3].tensor, P.fc_w)
    cleanup()
  end)

  it("runs in ONNX Runtime and matches aviary to 1e-5", function()
    need_ort()
    local m, forward = tiny_net()
    local path, inp, outp = tmp("tiny.onnx"), tmp("in.safetensors"), tmp("out.safetensors")
    O.write(path, m)
    av.manual_seed(11)
    local x = av.randn(2, 3, 8, 8)
    av.save(inp, {input = x})
    local ok, out = ort_run(path, inp, outp, "--threads 2 --bench 3")
    assert.truthy(ok, out)
    local bench = cjson.decode(out:match("{.-}"))
    assert.truthy(bench.median_ms >= bench.min_ms and bench.min_ms > 0, out)
    local res = av.load(outp)
    assert.truthy(res.logits, "no logits in ORT's output")
    assert.tensor_near(res.logits, forward(x), 1e-5)
    cleanup()
  end)

  it("keeps scalars, dtypes, strings, tensor and subgraph attributes", function()
    local m = {
      ir_version = 8, opset_import = {{domain = "", version = 17}},
      graph = {
        name = "g",
        node = {
          {op_type = "Constant", input = {}, output = {"k"},
           attribute = {{name = "value", type = "TENSOR", t = av.tensor({1, 2, 3}, {dtype = "int64"})}}},
          {op_type = "Resize", input = {"x", "", "scales"}, output = {"y"},
           attribute = {{name = "mode", type = "STRING", s = "nearest"},
                        {name = "scales_f", type = "FLOATS", floats = {0.5, 2}},
                        {name = "names", type = "STRINGS", strings = {"a", "b\0c"}},
                        {name = "pair", type = "TENSORS", tensors = {av.tensor({1.5}), av.tensor({2.5, 3.5})}},
                        {name = "body", type = "GRAPH", g = {name = "sub", node = {{op_type = "Identity", input = {"a"}, output = {"b"}}}}}}},
        },
        initializer = {
          {name = "scalar", tensor = av.scalar_tensor and av.scalar_tensor(2.5) or av.tensor(2.5)},
          {name = "f64", tensor = av.tensor({1.25, -2}, {dtype = "float64"})},
          {name = "i64", tensor = av.tensor({{-(1 << 62), 5}}, {dtype = "int64"})},
          {name = "i32", tensor = av.tensor({7, -8}, {dtype = "int32"})},
          {name = "u8", tensor = av.tensor({0, 255}, {dtype = "uint8"})},
          {name = "flag", tensor = av.tensor({0, 3, 1}, {dtype = "uint8"}), elem_type = O.ELEM.BOOL},
          {name = "small", tensor = av.tensor({-128, 127}, {dtype = "int64"}), elem_type = O.ELEM.INT8},
          {name = "half", tensor = av.tensor({0.5, -3}), elem_type = O.ELEM.FLOAT16},
          {name = "empty", tensor = av.zeros(0, 3)},
          {name = "view", tensor = av.arange(0, 6):view(2, 3):t()},
        },
        input = {{name = "x", elem_type = 1, shape = {}}, {name = "untyped"}},
        output = {{name = "y", elem_type = 1}},
      },
    }
    local r = O.decode(O.encode(m))
    local I = {}
    for _, init in ipairs(r.graph.initializer) do I[init.name] = init end
    assert.equal(I.scalar.tensor:dim(), 0, "dims {} read as a 0-d tensor")
    assert.equal(I.scalar.tensor:item(), 2.5)
    tensors_equal(I.f64.tensor, m.graph.initializer[2].tensor)
    tensors_equal(I.i64.tensor, m.graph.initializer[3].tensor)
    tensors_equal(I.i32.tensor, m.graph.initializer[4].tensor)
    tensors_equal(I.u8.tensor, m.graph.initializer[5].tensor)
    assert.equal(I.flag.elem_type, O.ELEM.BOOL)
    tensors_equal(I.flag.tensor, av.tensor({0, 1, 1}, {dtype = "uint8"}))
    assert.equal(I.small.elem_type, O.ELEM.INT8)
    tensors_equal(I.small.tensor, av.tensor({-128, 127}, {dtype = "int32"}))
    assert.equal(I.half.elem_type, O.ELEM.FLOAT16)
    tensors_equal(I.half.tensor, av.tensor({0.5, -3}))
    assert.same(I.empty.tensor:size(), {0, 3})
    tensors_equal(I.view.tensor, av.tensor({{0, 3}, {1, 4}, {2, 5}}))
    local c = r.graph.node[1].attribute[1]
    assert.equal(c.type, "TENSOR")
    assert.equal(c.elem_type, O.ELEM.INT64)
    tensors_equal(c.t, av.tensor({1, 2, 3}, {dtype = "int64"}))
    local a = r.graph.node[2].attribute
    assert.same(a[1], {name = "mode", type = "STRING", s = "nearest"})
    assert.same(a[2], {name = "scales_f", type = "FLOATS", floats = {0.5, 2}})
    assert.same(a[3], {name = "names", type = "STRINGS", strings = {"a", "b\0c"}})
    assert.equal(a[4].type, "TENSORS")
    tensors_equal(a[4].tensors[2], av.tensor({2.5, 3.5}))
    assert.equal(a[5].g.name, "sub")
    assert.equal(a[5].g.node[1].op_type, "Identity")
    assert.same(r.graph.node[2].input, {"x", "", "scales"})
    assert.same(r.graph.input, {{name = "x", elem_type = 1, shape = {}}, {name = "untyped"}})
    assert.same(r.graph.output, {{name = "y", elem_type = 1}})
  end)

  it("names the bad entry when a table cannot be written", function()
    local path = tmp("bad.onnx")
    local function g(graph) return {opset_import = {{version = 17}}, graph = graph} end
    assert.error_matches(function() O.write(path, g({node = {{input = {"x"}}}})) end, "model.graph.node[1].op_type must be a string")
    assert.error_matches(function() O.encode(g({initializer = {{name = "w", tensor = 3}}})) end,
      "model.graph.initializer[1] (initializer 'w').tensor must be a tensor, got number")
    assert.error_matches(function() O.encode(g({node = {{op_type = "A", attribute = {{name = "k", type = "INTS", ints = {1, 2.5}}}}}})) end,
      "model.graph.node[1].attribute[1].ints[2] must be an integer")
    assert.error_matches(function() O.encode(g({node = {{op_type = "A", attribute = {{name = "k", type = "LIST"}}}}})) end,
      "type 'LIST' is not an attribute type")
    assert.error_matches(function() O.encode(g({input = {{name = "x", elem_type = 1, shape = {-2}}}})) end,
      "model.graph.input[1].shape[1] is -2")
    assert.error_matches(function() O.encode(g({initializer = {{name = "b", tensor = av.tensor({300}), elem_type = O.ELEM.INT8}}})) end,
      "value 300 at element 1 does not fit data type INT8")
    assert.error_matches(function() O.encode({graph = 1}) end, "model.graph must be a table, got number")
    assert.falsy(io.open(path), "nothing written after an error")
    assert.error_matches(function() O.write(ROOT .. "/no/such/dir/x.onnx", g({})) end, "cannot write")
    cleanup()
  end)
end)

describe("typed fields and external data", function()
  it("reads float_data, int64_data, int32_data, double_data, FLOAT16 and external data", function()
    need_onnx()
    local dir = tmp("ext_dir")
    os.execute("mkdir -p " .. sh_quote(dir))
    python([[
import sys, os, numpy as np, onnx
from onnx import helper, TensorProto, external_data_helper
d = sys.argv[1]
ts = [helper.make_tensor("f", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.5]),
      helper.make_tensor("l", TensorProto.INT64, [3], [-(2**40), 0, 7]),
      helper.make_tensor("i", TensorProto.INT32, [2], [-5, 6]),
      helper.make_tensor("d", TensorProto.DOUBLE, [1], [0.1]),
      helper.make_tensor("h", TensorProto.FLOAT16, [2], np.array([1.5, -2.0], dtype=np.float16)),
      helper.make_tensor("b", TensorProto.BOOL, [2], [True, False]),
      helper.make_tensor("s8", TensorProto.INT8, [2], [-3, 4]),
      helper.make_tensor("z", TensorProto.FLOAT, [], [9.0])]
ext = helper.make_tensor("e", TensorProto.FLOAT, [3], np.arange(3, dtype=np.float32).tobytes(), raw=True)
with open(os.path.join(d, "weights.bin"), "wb") as f:
    f.write(b"\0" * 16 + np.array([7, 8, 9], dtype=np.float32).tobytes() + b"\0" * 4)
external_data_helper.set_external_data(ext, "weights.bin", offset=16, length=12)
ext.ClearField("raw_data")
ext.data_location = TensorProto.EXTERNAL
ts.append(ext)
nodes = [helper.make_node("Identity", [t.name], [t.name + "_out"]) for t in ts]
g = helper.make_graph(nodes, "typed", [], [helper.make_tensor_value_info(t.name + "_out", t.data_type, None) for t in ts], ts)
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), os.path.join(d, "typed.onnx"))
]], dir)
    local r = O.read(dir .. "/typed.onnx")
    local I = {}
    for _, init in ipairs(r.graph.initializer) do I[init.name] = init.tensor end
    tensors_equal(I.f, av.tensor({{1, 2}, {3, 4.5}}))
    tensors_equal(I.l, av.tensor({-(1 << 40), 0, 7}, {dtype = "int64"}))
    tensors_equal(I.i, av.tensor({-5, 6}, {dtype = "int32"}))
    tensors_equal(I.d, av.tensor({0.1}, {dtype = "float64"}))
    tensors_equal(I.h, av.tensor({1.5, -2}))
    tensors_equal(I.b, av.tensor({1, 0}, {dtype = "uint8"}))
    tensors_equal(I.s8, av.tensor({-3, 4}, {dtype = "int32"}))
    assert.equal(I.z:dim(), 0)
    assert.equal(I.z:item(), 9)
    tensors_equal(I.e, av.tensor({7, 8, 9}, {dtype = "float32"}))
    -- decode finds external data only with base_dir
    local bytes = read_bytes(dir .. "/typed.onnx")
    assert.error_matches(function() O.decode(bytes) end, "initializer 'e' keeps its data in external file 'weights.bin', but no base_dir")
    tensors_equal(O.decode(bytes, {base_dir = dir}).graph.initializer[9].tensor, av.tensor({7, 8, 9}, {dtype = "float32"}))
    os.remove(dir .. "/weights.bin")
    os.remove(dir .. "/typed.onnx")
    cleanup()
  end)
end)

describe("torch.onnx export", function()
  it("reads a tiny nn.Sequential exported by torch (opset 13, constant folding)", function()
    if not av_test.have_torch() then skip("python3-torch is missing") end
    need_onnx()
    local path = tmp("torch.onnx")
    local out = python([[
import sys, json, torch
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                          torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval()
x = torch.randn(1, 3, 8, 8)
torch.onnx.export(net, x, sys.argv[1], opset_version=13, do_constant_folding=True,
                  input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}})
print(json.dumps({"fc_w": net[5].weight.detach().flatten().tolist(), "fc_b": net[5].bias.detach().tolist()}))
]], path)
    local ref = cjson.decode(out)
    local r = O.read(path)
    assert.equal(r.producer_name, "pytorch")
    assert.equal(r.opset_import[1].version, 13)
    local ops = {}
    for _, n in ipairs(r.graph.node) do ops[#ops + 1] = n.op_type end
    assert.same(ops, {"Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"}, "BatchNorm folded into Conv")
    assert.same(r.graph.input[1], {name = "input", elem_type = 1, shape = {"batch", 3, 8, 8}})
    assert.equal(r.graph.output[1].name, "logits")
    local shapes = {}
    for _, init in ipairs(r.graph.initializer) do shapes[init.name] = init.tensor:size() end
    local conv = r.graph.node[1]
    assert.same(shapes[conv.input[2]], {4, 3, 3, 3})
    assert.same(shapes[conv.input[3]], {4})
    local attrs = {}
    for _, a in ipairs(conv.attribute) do attrs[a.name] = a end
    assert.same(attrs.kernel_shape.ints, {3, 3})
    assert.same(attrs.pads.ints, {1, 1, 1, 1})
    local fc = r.graph.node[5]
    local W
    for _, init in ipairs(r.graph.initializer) do if init.name == fc.input[2] then W = init.tensor end end
    assert.tensor_near(W:reshape(-1), av.tensor(ref.fc_w), 1e-7)
    cleanup()
  end)
end)

describe("bad files", function()
  it("refuses truncated files and random bytes", function()
    local m = tiny_net()
    local path = tmp("tiny.onnx")
    O.write(path, m)
    local bytes = read_bytes(path)
    local cut = tmp("cut.onnx")
    write_bytes(cut, bytes:sub(1, #bytes // 2))
    assert.error_matches(function() O.read(cut) end, "'" .. cut .. "': not a valid ONNX model (truncated or corrupt protobuf)")
    -- cuts inside the graph (the initializers fill most of the file)
    for n = 0, 40 do
      assert.error_matches(function() O.decode(bytes:sub(1, #bytes // 3 + n)) end, "not a valid ONNX model")
    end
    math.randomseed(1234)
    local rnd = {}
    for i = 1, 4096 do rnd[i] = string.char(math.random(0, 255)) end
    local junk = tmp("junk.onnx")
    write_bytes(junk, table.concat(rnd))
    assert.error_matches(function() O.read(junk) end, "'" .. junk .. "': not a valid ONNX model")
    -- random inputs of many lengths never crash (the ASan build checks the reads)
    for len = 0, 300, 3 do
      local ok, err = pcall(O.decode, table.concat(rnd, "", 1, len))
      assert.truthy(ok or tostring(err):find("not a valid ONNX model", 1, true), tostring(err))
    end
    -- single-byte corruptions of a valid file either decode or fail with a message
    for i = 1, 300 do
      local pos = math.random(1, #bytes)
      local bad = bytes:sub(1, pos - 1) .. string.char(math.random(0, 255)) .. bytes:sub(pos + 1)
      local ok, err = pcall(O.decode, bad)
      assert.truthy(ok or tostring(err):find("'(bytes)': ", 1, true), tostring(err))
    end
    assert.error_matches(function() O.decode("") end, "not a valid ONNX model: it has no graph")
    -- thousands of nested subgraphs are refused before protobuf-c recurses into them
    local function varint(n)
      local out = {}
      repeat
        local b = n & 0x7F
        n = n >> 7
        out[#out + 1] = string.char(n > 0 and (b | 0x80) or b)
      until n == 0
      return table.concat(out)
    end
    local function field(id, payload) return varint(id << 3 | 2) .. varint(#payload) .. payload end
    local g = ""
    for _ = 1, 2000 do g = field(1, field(5, field(6, g))) end
    assert.error_matches(function() O.decode(field(7, g)) end, "messages nest deeper than 100 levels")
    assert.error_matches(function() O.read(tmp("missing.onnx")) end, "cannot open")
    cleanup()
  end)

  it("names the initializer with wrong-sized raw_data, a bad type, a negative dim, bad external data", function()
    need_onnx()
    local dir = tmp("bad_dir")
    os.execute("mkdir -p " .. sh_quote(dir))
    python([[
import sys, os, numpy as np, onnx
from onnx import helper, TensorProto, external_data_helper
d = sys.argv[1]
def save(name, t):
    g = helper.make_graph([helper.make_node("Identity", [t.name], ["y"])], "bad", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [t])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), os.path.join(d, name))
save("rawsize.onnx", TensorProto(name="conv.w", data_type=TensorProto.FLOAT, dims=[2, 3],
                                  raw_data=np.zeros(5, np.float32).tobytes()))
save("strtype.onnx", helper.make_tensor("names", TensorProto.STRING, [1], [b"x"]))
save("c64.onnx", helper.make_tensor("cplx", TensorProto.COMPLEX64, [1], np.zeros(2, np.float32).tobytes(), raw=True))
neg = TensorProto(name="neg", data_type=TensorProto.FLOAT, dims=[-2, 3], raw_data=b"")
save("negdim.onnx", neg)
save("fewvals.onnx", TensorProto(name="few", data_type=TensorProto.FLOAT, dims=[4], float_data=[1.0, 2.0]))
with open(os.path.join(d, "data.bin"), "wb") as f:
    f.write(np.zeros(6, np.float32).tobytes())
def ext(name, loc, offset, length):
    t = helper.make_tensor(name, TensorProto.FLOAT, [3], np.zeros(3, np.float32).tobytes(), raw=True)
    external_data_helper.set_external_data(t, loc, offset=offset, length=length)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    return t
save("extmissing.onnx", ext("w_missing", "nope.bin", 0, 12))
save("extrange.onnx", ext("w_range", "data.bin", 16, 12))
save("extlen.onnx", ext("w_len", "data.bin", 0, 8))
save("extescape.onnx", ext("w_escape", "../data.bin", 0, 12))
]], dir)
    local function f(n) return dir .. "/" .. n end
    assert.error_matches(function() O.read(f"rawsize.onnx") end,
      "'" .. f"rawsize.onnx" .. "': initializer 'conv.w' has 20 bytes of raw_data, but its dims 2x3 of FLOAT need 24 bytes")
    assert.error_matches(function() O.read(f"strtype.onnx") end, "initializer 'names' has data type STRING, which aviary cannot read")
    assert.error_matches(function() O.read(f"c64.onnx") end, "initializer 'cplx' has data type COMPLEX64")
    assert.error_matches(function() O.read(f"negdim.onnx") end, "initializer 'neg' has a negative dim (-2 at position 1 of 2)")
    assert.error_matches(function() O.read(f"fewvals.onnx") end, "initializer 'few' holds 2 values in float_data, but its dims 4 need 4")
    assert.error_matches(function() O.read(f"extmissing.onnx") end,
      "initializer 'w_missing': cannot open external data file '" .. dir .. "/nope.bin': No such file")
    assert.error_matches(function() O.read(f"extrange.onnx") end,
      "initializer 'w_range': external data offset 16 and length 12 go beyond the end of '" .. dir .. "/data.bin' (24 bytes)")
    assert.error_matches(function() O.read(f"extlen.onnx") end, "initializer 'w_len': external data in '" .. dir .. "/data.bin' has 8 bytes")
    assert.error_matches(function() O.read(f"extescape.onnx") end, "location '../data.bin' must be a relative path inside the model's folder")
    for _, n in ipairs({"rawsize", "strtype", "c64", "negdim", "fewvals", "extmissing", "extrange", "extlen", "extescape"}) do
      os.remove(f(n .. ".onnx"))
    end
    os.remove(f"data.bin")
    cleanup()
  end)

  it("ort_run.js reports a model ONNX Runtime cannot load", function()
    need_ort()
    local junk, inp, outp = tmp("junk.onnx"), tmp("in.safetensors"), tmp("out.safetensors")
    write_bytes(junk, "not a model")
    av.save(inp, {input = av.zeros(1)})
    local ok, out = ort_run(junk, inp, outp)
    assert.falsy(ok)
    assert.truthy(out:find("cannot load", 1, true), out)
    cleanup()
  end)
end)
