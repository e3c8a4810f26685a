-- aviary.models' GoogLeNet, Inception v3 and DenseNet families against
-- torchvision 0.14 (googlenet and inception_v3 without auxiliary
-- classifiers): state_dict names (in order) and shapes, module names and
-- types, parameter counts, default initialisation statistics, forward output
-- sizes (eval, no_grad and autograd paths), transform_input, options and
-- replace_head. The torchvision facts come from one run of
-- tests/parity/models_arch_b.py; without torch/torchvision those checks skip
-- and the rest (counts against torchvision's published numbers, init,
-- forward) still run. Logits parity with loaded weights is tests/lua/test_models.lua's.
local av = require "aviary"
local models = require "aviary.models"

local ARCH = av_test.root .. "/tests/parity/models_arch_b.py"
local CLASSES = 200

-- name, head, parameters with 1000 classes (torchvision; googlenet's and
-- inception_v3's without the auxiliary classifiers), input side of the forward check
local MODELS = {
  {"googlenet", "fc", 6624904, 64},
  {"inception_v3", "fc", 23834568, 96},
  {"densenet121", "classifier", 7978856, 64},
  {"densenet161", "classifier", 28681000, 64},
  {"densenet169", "classifier", 14149480, 64},
  {"densenet201", "classifier", 20013928, 64},
}

------------------------------------------------------------------------------
-- torchvision's facts, fetched once for every model

local ref, ref_skip, ref_fail

local tv_ok
local function have_torchvision()
  if tv_ok == nil then
    tv_ok = av_test.have_torch() and os.execute(av_test.python_bin .. " -c 'import torchvision' >/dev/null 2>&1") == true
  end
  return tv_ok
end

local function reference(name)
  if ref == nil and ref_skip == nil and ref_fail == nil then
    if not av_test.have_torch() then
      ref_skip = "python3-torch not installed"
    elseif not have_torchvision() then
      ref_skip = "python3-torchvision not installed"
    else
      local names = {}
      for _, m in ipairs(MODELS) do names[#names + 1] = m[1] end
      local ok, out = av_test.python(ARCH, CLASSES, table.unpack(names))
      if not ok then
        ref_fail = "models_arch_b.py failed: " .. out
      else
        ref = {}
        local cur
        for line in out:gmatch("[^\n]+") do
          local kind, a, b, c = line:match("^(%S+) (%S+) (%S+) ?(%S*)$")
          if kind == "model" then
            cur = {num_params = tonumber(b), num_keys = tonumber(c), keys = {}, modules = {}}
            ref[a] = cur
          elseif kind == "key" then
            cur.keys[#cur.keys + 1] = {a, b}
          elseif kind == "module" then
            cur.modules[#cur.modules + 1] = {a == "-" and "" or a, b}
          end
        end
      end
    end
  end
  if ref_skip then skip(ref_skip) end
  if ref_fail then error(ref_fail, 0) end
  local r = ref[name]
  if r == nil then error("models_arch_b.py printed nothing for " .. name, 0) end
  return r
end

------------------------------------------------------------------------------
-- helpers

local function shape_of(t) return t:dim() == 0 and "-" or table.concat(t:size(), ",") end

local function state_names(model)
  if model.state_dict_keys then return model:state_dict_keys() end
  return select(2, model:state_dict())
end

local function check_state_dict(model, r, label)
  local sd, names = model:state_dict(), state_names(model)
  local n = math.max(#names, #r.keys)
  for i = 1, n do
    local got, want = names[i], r.keys[i]
    local gs = got and shape_of(sd[got]) or "nothing"
    if want == nil or got ~= want[1] or gs ~= want[2] then
      error(("%s: state_dict entry %d is %s [%s], torchvision's is %s [%s] (%d entries, torchvision %d)"):format(label, i,
        tostring(got), gs, want and want[1] or "nothing", want and want[2] or "", #names, #r.keys), 2)
    end
  end
  assert.equal(#names, r.num_keys, label .. ": number of state_dict entries")
end

local function check_modules(model, r, label)
  local i = 0
  for name, m in model:named_modules() do
    i = i + 1
    local want = r.modules[i]
    if want == nil or want[1] ~= name or want[2] ~= m:type_name() then
      error(("%s: module %d is '%s' (%s), torchvision's is '%s' (%s)"):format(label, i, name, m:type_name(),
        want and want[1] or "nothing", want and want[2] or ""), 2)
    end
  end
  assert.equal(i, #r.modules, label .. ": number of modules")
end

local function all_equal(t, v) return t:numel() == 0 or (t:double() - v):abs():max():item() == 0 end

-- sample std within max(3%, 5/sqrt(2n)) of want and mean about 0
local function check_std(t, want, label)
  local n = t:numel()
  local d = t:double()
  local got = d:std():item()
  local tol = math.max(0.03, 5 / math.sqrt(2 * n))
  if math.abs(got / want - 1) > tol then
    error(("%s: std %.6g, expected %.6g (within %.1f%%, %d elements)"):format(label, got, want, tol * 100, n), 2)
  end
  local mean = d:mean():item()
  if math.abs(mean) > 6 * want / math.sqrt(n) then
    error(("%s: mean %.6g, expected about 0 (std %.6g, %d elements)"):format(label, mean, want, n), 2)
  end
end

local function check_bn(m, eps, where)
  assert.truthy(all_equal(m.weight, 1), where .. ".weight should be all 1")
  assert.truthy(all_equal(m.bias, 0), where .. ".bias should be all 0")
  assert.truthy(all_equal(m.running_mean, 0), where .. ".running_mean should be all 0")
  assert.truthy(all_equal(m.running_var, 1), where .. ".running_var should be all 1")
  assert.equal(m.num_batches_tracked:item(), 0, where .. ".num_batches_tracked")
  assert.equal(m.eps, eps, where .. ".eps")
end

-- all Conv2d weights of a model as one flat float64 tensor
local function conv_weights(model)
  local parts = {}
  for _, m in model:named_modules() do
    if m:type_name() == "Conv2d" then parts[#parts + 1] = m.weight:detach():reshape(-1) end
  end
  return av.cat(parts, 1):double()
end

-- the default Linear init of torch: U(-1/sqrt(in), 1/sqrt(in))
local function check_default_bias(b, in_features, where)
  local bound = 1 / math.sqrt(in_features)
  assert.truthy(b:abs():max():item() <= bound, where .. " exceeds 1/sqrt(in_features)")
  assert.truthy(b:abs():max():item() > 0, where .. " is all 0 (expected nn.Linear's uniform default)")
end

-- models built once with CLASSES classes and shared by the tests below
local built = {}
local function model(name)
  if not built[name] then built[name] = models.create(name, {num_classes = CLASSES}) end
  return built[name]
end

local function forward(net, x)
  net:evaluate()
  return av.no_grad(function() return net(x) end)
end

------------------------------------------------------------------------------

describe("registry", function()
  it("registers googlenet, inception_v3 and densenet121/161/169/201 with their heads and input sizes", function()
    for _, m in ipairs(MODELS) do
      local s = models.spec(m[1])
      assert.equal(s.head, m[2], m[1] .. " head")
      assert.equal(s.input_size or 224, m[1] == "inception_v3" and 299 or 224, m[1] .. " input_size")
    end
    assert.equal(models.spec("googlenet").family, "googlenet")
    assert.equal(models.spec("inception_v3").family, "inception")
    assert.equal(models.spec("densenet121").family, "densenet")
  end)

  it("rejects unknown options with a suggestion", function()
    assert.error_matches(function() models.create("googlenet", {dropuot = 0.1}) end, "did you mean 'dropout'")
    assert.error_matches(function() models.create("inception_v3", {transform_inputs = true}) end,
      "did you mean 'transform_input'")
  end)
end)

-- one model of each kind, built once with CLASSES classes: the checks run
-- on it in turn (the training check last, as it moves BN statistics)
local function head_in(net, head) return net:get(head).in_features end

for _, spec in ipairs(MODELS) do
  local name, head, count1000, side = spec[1], spec[2], spec[3], spec[4]
  describe(name, function()
    it("parameter count: torchvision's " .. count1000 .. " with 1000 classes", function()
      local net = model(name)
      local k = head_in(net, head)
      assert.equal(net:num_parameters() + (1000 - CLASSES) * (k + 1), count1000)
    end)

    it("state_dict names in order, shapes, modules and parameter count against torchvision", function()
      local r = reference(name)
      local net = model(name)
      check_state_dict(net, r, name)
      check_modules(net, r, name)
      assert.equal(net:num_parameters(), r.num_params, name .. ": parameters")
    end)

    it("forward: N x classes in eval mode", function()
      local y = forward(model(name), av.randn(1, 3, side, side))
      assert.same(y:size(), {1, CLASSES})
      assert.truthy(y:isfinite():all():item() == 1, "non-finite logits")
      -- the larger DenseNets are not needed further on
      if name ~= "googlenet" and name ~= "inception_v3" and name ~= "densenet121" then
        built[name] = nil
        collectgarbage()
      end
    end)
  end)
end

describe("googlenet and inception_v3", function()
  it("have no auxiliary classifiers", function()
    for _, n in ipairs({"googlenet", "inception_v3"}) do
      for _, k in ipairs(state_names(model(n))) do
        assert.falsy(k:match("^aux") or k:match("^AuxLogits"), n .. ": unexpected key " .. k)
      end
      assert.equal(model(n).aux_logits, false)
    end
  end)
end)

describe("default initialisation", function()
  it("googlenet: trunc_normal_(std=0.01, a=-2, b=2) convolutions and fc weight, BN 1/0 (eps 0.001)", function()
    local net = model("googlenet")
    local nbn = 0
    for name, m in net:named_modules() do
      local ty = m:type_name()
      if ty == "BatchNorm2d" then
        check_bn(m, 0.001, name); nbn = nbn + 1
      elseif ty == "Conv2d" then
        assert.truthy(m.bias == nil, name .. " should have no bias")
        assert.truthy(m.weight:abs():max():item() <= 2, name .. ".weight outside [-2, 2]")
        if m.weight:numel() >= 20000 then check_std(m.weight, 0.01, name .. ".weight") end
      end
    end
    assert.equal(nbn, 57, "batch norms")
    local w = conv_weights(net)
    check_std(w, 0.01, "all conv weights")
    -- a = -2, b = 2 are absolute bounds (200 std), so the normal's tails
    -- beyond 2 std stay: P(|z| > 2) = 4.55%
    local frac = w:abs():gt(0.02):double():mean():item()
    assert.near(frac, 0.0455, 0.003, "fraction of conv weights beyond 0.02")
    check_std(net.fc.weight, 0.01, "fc.weight")
    check_default_bias(net.fc.bias, 1024, "fc.bias")
  end)

  it("inception_v3: trunc_normal_(std=0.1, a=-2, b=2) convolutions and fc weight, BN 1/0 (eps 0.001)", function()
    local net = model("inception_v3")
    local nbn = 0
    for name, m in net:named_modules() do
      local ty = m:type_name()
      if ty == "BatchNorm2d" then
        check_bn(m, 0.001, name); nbn = nbn + 1
      elseif ty == "Conv2d" then
        assert.truthy(m.bias == nil, name .. " should have no bias")
        assert.truthy(m.weight:abs():max():item() <= 2, name .. ".weight outside [-2, 2]")
        if m.weight:numel() >= 20000 then check_std(m.weight, 0.1, name .. ".weight") end
      end
    end
    assert.equal(nbn, 94, "batch norms")
    check_std(conv_weights(net), 0.1, "all conv weights")
    check_std(net.fc.weight, 0.1, "fc.weight")
    check_default_bias(net.fc.bias, 2048, "fc.bias")
  end)

  it("densenet121: kaiming_normal_ (fan_in) convolutions, BN 1/0, classifier bias 0", function()
    local net = model("densenet121")
    local nconv = 0
    for name, m in net:named_modules() do
      local ty = m:type_name()
      if ty == "BatchNorm2d" then
        check_bn(m, 1e-5, name)
      elseif ty == "Conv2d" then
        nconv = nconv + 1
        assert.truthy(m.bias == nil, name .. " should have no bias")
        local s = m.weight:size()
        check_std(m.weight, math.sqrt(2 / (s[2] * s[3] * s[4])), name .. ".weight (kaiming_normal_ fan_in)")
      end
    end
    assert.equal(nconv, 120, "convolutions")
    local fc = net.classifier
    assert.equal(fc.in_features, 1024)
    assert.truthy(all_equal(fc.bias, 0), "classifier.bias should be all 0")
    local bound = 1 / math.sqrt(1024)
    assert.truthy(fc.weight:abs():max():item() <= bound, "classifier.weight exceeds 1/sqrt(in)")
    check_std(fc.weight, bound / math.sqrt(3), "classifier.weight (uniform +-1/sqrt(in))")
  end)
end)

-- max |a - b| relative to max |b|
local function rel_diff(a, b)
  return (a - b):abs():max():item() / math.max(b:abs():max():item(), 1e-30)
end

describe("forward paths", function()
  it("inception_v3 takes its smallest input, 75 x 75", function()
    local y = forward(model("inception_v3"), av.randn(2, 3, 75, 75))
    assert.same(y:size(), {2, CLASSES})
  end)

  it("the in-place no_grad path equals the autograd path", function()
    for _, n in ipairs({"googlenet", "inception_v3", "densenet121"}) do
      local net = model(n):evaluate()
      local side = n == "inception_v3" and 96 or 64
      local x = av.randn(2, 3, side, side)
      local a = av.no_grad(function() return net(x) end)
      local b = net(x)
      assert.truthy(b.requires_grad, n .. ": logits should require grad")
      local d = rel_diff(a, b:detach())
      assert.truthy(d < 1e-4, ("%s: no_grad and autograd logits differ by %g (relative)"):format(n, d))
    end
  end)

  it("dropout option: p as given (defaults 0.2, 0.5), the identity in eval mode", function()
    assert.equal(model("googlenet").dropout.p, 0.2)
    assert.equal(model("inception_v3").dropout.p, 0.5)
    local net = models.create("googlenet", {num_classes = 10, dropout = 0.9})
    assert.equal(net.dropout.p, 0.9)
    local x = av.randn(1, 3, 64, 64)
    assert.tensor_near(forward(net, x), forward(net, x), 0)
  end)

  it("transform_input = (x * std + mean - 0.5) / 0.5 per channel before the network", function()
    assert.equal(models.create("googlenet", {num_classes = 10, transform_input = true}).transform_input, true)
    for _, n in ipairs({"googlenet", "inception_v3"}) do
      local side = n == "inception_v3" and 96 or 64
      local net = model(n)
      assert.equal(net.transform_input, false, n .. " default")
      local x = av.randn(2, 3, side, side)
      local mean, std = {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}
      local parts = {}
      for ch = 1, 3 do parts[ch] = (x:narrow(2, ch, 1) * std[ch] + mean[ch] - 0.5) / 0.5 end
      local b = forward(net, av.cat(parts, 2))
      net.transform_input = true
      local a = forward(net, x)
      net.transform_input = false
      local d = rel_diff(a, b)
      assert.truthy(d < 1e-4, ("%s: transform_input logits differ by %g (relative)"):format(n, d))
    end
  end)

  it("trains: gradients reach the first convolution and BN statistics move", function()
    for _, c in ipairs({{"googlenet", "conv1.conv.weight", "conv1.bn.running_mean", "fc", 64},
                        {"inception_v3", "Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.running_mean", "fc", 96},
                        {"densenet121", "features.conv0.weight", "features.norm0.running_mean", "classifier", 64}}) do
      local net = model(c[1]):train()
      net:zero_grad()
      local y = net(av.randn(2, 3, c[5], c[5]))
      assert.same(y:size(), {2, CLASSES})
      av.cross_entropy(y, av.tensor({1, 7}, {dtype = "int64"})):backward()
      local g = net:get(c[2]).grad
      assert.truthy(g ~= nil, c[1] .. ": no gradient on " .. c[2])
      assert.truthy(g:isfinite():all():item() == 1 and g:abs():max():item() > 0, c[1] .. ": bad gradient")
      assert.truthy(net:get(c[4] .. ".weight").grad ~= nil, c[1] .. ": no head gradient")
      assert.truthy(net:get(c[3]):abs():max():item() > 0, c[1] .. ": running_mean did not move")
      assert.equal(net:get(c[3]:gsub("running_mean$", "num_batches_tracked")):item(), 1)
      net:zero_grad()
      net:evaluate()
    end
  end)
end)

describe("replace_head", function()
  it("replace_head(200) after 1000 classes: N x 200, torchvision's names and order", function()
    for _, c in ipairs({{"googlenet", "fc", 1024, 64}, {"inception_v3", "fc", 2048, 96},
                        {"densenet121", "classifier", 1024, 64}}) do
      local net = model(c[1])
      net:replace_head(1000)
      assert.equal(net:get(c[2]).out_features, 1000)
      local y = forward(net, av.randn(1, 3, c[4], c[4]))
      assert.same(y:size(), {1, 1000}, c[1])
      local head = net:replace_head(200)
      assert.equal(net:get(c[2]), head, c[1] .. " head")
      assert.equal(head.in_features, c[3])
      assert.equal(head.out_features, 200)
      y = forward(net, av.randn(1, 3, c[4], c[4]))
      assert.same(y:size(), {1, 200}, c[1])
      if have_torchvision() then check_state_dict(net, reference(c[1]), c[1] .. " after replace_head") end
      built[c[1]] = nil
      collectgarbage()
    end
  end)
end)
