-- The model zoo against torchvision, in both directions: torchvision's
-- weights (seeded random, batch-norm statistics from a real pass) load into
-- each aviary model by name, which must give torchvision's logits; aviary's
-- model:save() must load into the torchvision model with
-- load_state_dict(strict=True) and give the same logits again.
local av = require "aviary"
local models = require "aviary.models"

local REF = av_test.root .. "/tests/parity/models_ref.py"
local CLASSES = 200

-- the study's models: each is checked here against torchvision's weights and
-- logits in both directions; the other registered variants (vgg13, vgg19,
-- densenet161, ...) are built from the same classes and their names, shapes
-- and counts are checked in test_models_resnet.lua and test_models_inception.lua
local required = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                  "resnext101_32x8d", "wide_resnet50_2", "vgg11_bn", "vgg16", "vgg16_bn", "googlenet",
                  "inception_v3", "mobilenet_v2", "densenet121"}

local function input_size(name)
  if name == "inception_v3" then return 96 end
  return 64
end

local have_tv
local function have_torchvision()
  if have_tv == nil then
    have_tv = os.execute(av_test.python_bin .. " -c 'import torchvision' >/dev/null 2>&1") == true
  end
  return have_tv
end

local function rel_diff(a, b)
  local m = b:abs():max():item()
  return (a - b):abs():max():item() / math.max(m, 1e-12)
end

local function argmax_rows(t)
  return t:argmax(2)
end

describe("model zoo", function()
  it("lists every model of the study", function()
    local have = {}
    for _, n in ipairs(models.list()) do have[n] = true end
    for _, n in ipairs(required) do assert.truthy(have[n], "missing model " .. n) end
  end)

  it("rejects an unknown model name with a suggestion", function()
    assert.error_matches(function() models.create("resnt50") end, "did you mean 'resnet50'")
    assert.error_matches(function() models.create("resnet18", {num_clases = 3}) end, "did you mean 'num_classes'")
  end)
end)

local names = required
local dir = av_test.tmpdir() .. "/models." .. math.random(1, 1e9)
local exported, export_out = false, nil
local results = {}

local function export_all()
  if exported then return end
  exported = true
  os.execute("mkdir -p '" .. dir .. "'")
  local specs = {}
  for _, n in ipairs(names) do specs[#specs + 1] = ("%s:%d:%d"):format(n, CLASSES, input_size(n)) end
  local ok, out = av_test.python(REF, "export", dir, table.concat(specs, ","))
  export_out = ok and true or out
end

describe("torchvision weights in aviary", function()
  for _, name in ipairs(names) do
    it(name .. ": names, shapes, parameter count and logits match torchvision", function()
      if not av_test.have_torch() or not have_torchvision() then skip("python3-torchvision not installed") end
      export_all()
      assert.truthy(export_out == true, export_out)
      local io_t, meta = av.load(dir .. "/" .. name .. ".io.safetensors")
      local model = models.create(name, {num_classes = CLASSES, weights = dir .. "/" .. name .. ".weights.safetensors"})
      -- the same names, in the same order, with the same shapes
      local sd, order = model:state_dict(), model:state_dict_keys()
      local keys = {}
      for k in meta.keys:gmatch("[^,]+") do keys[#keys + 1] = k end
      local shapes = {}
      for s in meta.shapes:gmatch("[^;]*") do shapes[#shapes + 1] = s end
      assert.equal(#keys, #order, "number of state_dict entries")
      for i, k in ipairs(keys) do
        assert.equal(k, order[i], "state_dict entry " .. i)
        local got = table.concat(sd[k]:size(), "x")
        assert.equal(shapes[i], got, "shape of " .. k)
      end
      assert.equal(tonumber(meta.num_parameters), model:num_parameters(), "parameter count")
      model:evaluate()
      local y = av.no_grad(function() return model(io_t.input) end)
      local r = rel_diff(y, io_t.logits)
      assert.truthy(r <= 1e-4, ("logits differ from torchvision's: max relative difference %.3g"):format(r))
      assert.truthy(argmax_rows(y):eq(argmax_rows(io_t.logits)):all():item() == 1, "top-1 differs")
      model:save(dir .. "/" .. name .. ".aviary.safetensors")
      av.save(dir .. "/" .. name .. ".aviary_logits.safetensors", {logits = y})
      results[name] = true
      model = nil
      collectgarbage()
      collectgarbage()
      os.remove(dir .. "/" .. name .. ".weights.safetensors")
    end)
  end
end)

describe("aviary weights in torchvision", function()
  local checked
  local function check_all()
    if checked then return checked end
    local specs = {}
    for _, n in ipairs(names) do
      if results[n] then specs[#specs + 1] = ("%s:%d:%d"):format(n, CLASSES, input_size(n)) end
    end
    checked = {}
    if #specs == 0 then return checked end
    local ok, out = av_test.python(REF, "check", dir, table.concat(specs, ","))
    for line in out:gmatch("[^\n]+") do
      local st, n, rest = line:match("^(%a+) (%S+) (.*)$")
      if st then checked[n] = {st == "ok", rest} end
    end
    if not ok then checked._error = out end
    return checked
  end
  for _, name in ipairs(names) do
    it(name .. ": model:save() loads into torchvision (strict) with the same logits", function()
      if not av_test.have_torch() or not have_torchvision() then skip("python3-torchvision not installed") end
      if not results[name] then skip("the load test of " .. name .. " failed") end
      local c = check_all()
      local r = c[name]
      assert.truthy(r, "no result from torchvision for " .. name .. ": " .. tostring(c._error))
      assert.truthy(r[1], r[2])
    end)
  end
  it("cleans up", function() os.execute("rm -rf '" .. dir .. "'") end)
end)

describe("weight loading errors", function()
  it("names missing and unexpected keys and shape mismatches", function()
    local path = av_test.tmpname(".safetensors")
    local small = models.create("resnet18", {num_classes = 10})
    small:save(path)
    -- another architecture: keys differ
    assert.error_matches(function() models.create("resnet34", {num_classes = 10, weights = path}) end,
      "missing keys: layer1.2.conv1.weight")
    -- another head size: a shape mismatch naming the tensor, unless ignore_head
    assert.error_matches(function() models.create("resnet18", {num_classes = 200, weights = path}) end,
      "fc.weight: checkpoint has 10x512, the model has 200x512")
    local m = models.create("resnet18", {num_classes = 200, weights = path, ignore_head = true})
    assert.equal(200, m.fc.out_features)
    local a = m:get("layer4.1.conv2.weight")
    local b = small:get("layer4.1.conv2.weight")
    assert.truthy(a:eq(b):all():item() == 1)
    os.remove(path)
  end)

  it("rejects missing, truncated and pickle files with a clear message", function()
    assert.error_matches(function() models.create("resnet18", {weights = "/nonexistent/r18.safetensors"}) end,
      "cannot open weights file '/nonexistent/r18.safetensors'")
    assert.error_matches(function() models.create("resnet18", {weights = "resnet18-f37072fd.pth"}) end,
      "PyTorch pickle")
    local path = av_test.tmpname(".safetensors")
    models.create("resnet18", {num_classes = 3}):save(path)
    local f = io.open(path, "rb")
    local bytes = f:read("a")
    f:close()
    f = io.open(path, "wb")
    f:write(bytes:sub(1, #bytes // 2))
    f:close()
    assert.error_matches(function() models.create("resnet18", {num_classes = 3, weights = path}) end,
      "not a readable safetensors file")
    os.remove(path)
  end)
end)

describe("tools/pth2safetensors.py", function()
  it("converts a PyTorch .pth state_dict (DataParallel prefix included) into weights aviary loads", function()
    if not av_test.have_torch() or not have_torchvision() then skip("python3-torchvision not installed") end
    local pth, out = av_test.tmpname(".pth"), av_test.tmpname(".safetensors")
    local ok, msg = av_test.python("-c", ([[
import torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=7)
torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in m.state_dict().items()}}, %q)
torch.save(m.state_dict(), %q + ".ref")
]]):format(pth, pth))
    assert.truthy(ok, msg)
    ok, msg = av_test.python(av_test.root .. "/tools/pth2safetensors.py", pth, out)
    assert.truthy(ok, msg)
    assert.truthy(msg:find("wrote 122 tensors", 1, true), msg)
    local m = models.create("resnet18", {num_classes = 7, weights = out})
    local t = av.load(out)
    assert.equal(0, (m.fc.weight - t["fc.weight"]):abs():max():item())
    os.remove(pth); os.remove(pth .. ".ref"); os.remove(out)
  end)
end)
