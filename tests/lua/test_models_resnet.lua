-- aviary.models' ResNet/ResNeXt/Wide ResNet, VGG and MobileNetV2 families
-- against torchvision 0.14: state_dict names (in order) and shapes, module
-- names and types, the printed model, parameter counts, default initialisation statistics,
-- forward output sizes, the autograd and in-place inference paths, family
-- options and replace_head. The torchvision facts come from one run of
-- tests/parity/models_arch.py; without torch/torchvision those checks skip and
-- the rest (counts against torchvision's published num_params, init, forward)
-- still run. Logits parity with loaded weights is tests/lua/test_models.lua's.
local av = require "aviary"
local models = require "aviary.models"

local ARCH = av_test.root .. "/tests/parity/models_arch.py"

-- name, family, head, torchvision's num_params (the weights' meta), input of the forward check
local MODELS = {
  {"resnet18", "resnet", "fc", 11689512},
  {"resnet34", "resnet", "fc", 21797672},
  {"resnet50", "resnet", "fc", 25557032},
  {"resnet101", "resnet", "fc", 44549160},
  {"resnet152", "resnet", "fc", 60192808},
  {"resnext50_32x4d", "resnet", "fc", 25028904},
  {"resnext101_32x8d", "resnet", "fc", 88791336},
  {"wide_resnet50_2", "resnet", "fc", 68883240},
  {"vgg11", "vgg", "classifier.6", 132863336},
  {"vgg11_bn", "vgg", "classifier.6", 132868840},
  {"vgg13", "vgg", "classifier.6", 133047848},
  {"vgg13_bn", "vgg", "classifier.6", 133053736},
  {"vgg16", "vgg", "classifier.6", 138357544},
  {"vgg16_bn", "vgg", "classifier.6", 138365992},
  {"vgg19", "vgg", "classifier.6", 143667240},
  {"vgg19_bn", "vgg", "classifier.6", 143678248},
  {"mobilenet_v2", "mobilenet", "classifier.1", 3504872},
}

-- variants built with options: torchvision spec, aviary name, options
local VARIANTS = {
  {"resnet18:10:zero_init_residual=True", "resnet18", {num_classes = 10, zero_init_residual = true}},
  {"resnet50:1000:zero_init_residual=True", "resnet50", {zero_init_residual = true}},
  {"vgg11_bn:10:dropout=0.25", "vgg11_bn", {num_classes = 10, dropout = 0.25}},
  {"mobilenet_v2:200:width_mult=0.5", "mobilenet_v2", {num_classes = 200, width_mult = 0.5}},
  {"mobilenet_v2:1000:width_mult=1.4,dropout=0.1", "mobilenet_v2", {width_mult = 1.4, dropout = 0.1}},
  {"mobilenet_v2:7:width_mult=0.35", "mobilenet_v2", {num_classes = 7, width_mult = 0.35}},
}

------------------------------------------------------------------------------
-- torchvision's facts, fetched once for every model and variant

local ref, ref_skip, ref_fail

local torchvision_ok
local function have_torchvision()
  if torchvision_ok == nil then
    torchvision_ok = av_test.have_torch()
      and os.execute(av_test.python_bin .. " -c 'import torchvision' >/dev/null 2>&1") == true
  end
  return torchvision_ok
end

local function reference(spec)
  if ref == nil and ref_skip == nil and ref_fail == nil then
    if not av_test.have_torch() then
      ref_skip = "python3-torch not installed"
    elseif not have_torchvision() then
      ref_skip = "python3-torchvision not installed"
    else
      local specs = {}
      for _, m in ipairs(MODELS) do specs[#specs + 1] = m[1] end
      for _, v in ipairs(VARIANTS) do specs[#specs + 1] = v[1] end
      local ok, out = av_test.python(ARCH, table.unpack(specs))
      if not ok then
        ref_fail = "models_arch.py failed: " .. out
      else
        ref = {}
        for line in out:gmatch("[^\n]+") do
          local kind, s, rest = line:match("^(%S+) (%S+) ?(.*)$")
          if kind == "error" then
            ref[s] = {error = rest}
          elseif kind == "model" then
            local nc, np, nk = rest:match("^(%d+) (%d+) (%d+)$")
            ref[s] = {num_classes = tonumber(nc), num_params = tonumber(np), num_keys = tonumber(nk), keys = {}, modules = {},
                      repr = {}}
          elseif kind == "key" then
            local k, shape = rest:match("^(%S+) (%S+)$")
            local r = ref[s].keys
            r[#r + 1] = {k, shape}
          elseif kind == "module" then
            local k, ty = rest:match("^(%S+) (%S+)$")
            local r = ref[s].modules
            r[#r + 1] = {k == "-" and "" or k, ty}
          elseif kind == "repr" then
            local r = ref[s].repr
            r[#r + 1] = rest:sub(2)
          end
        end
      end
    end
  end
  if ref_skip then skip(ref_skip) end
  if ref_fail then error(ref_fail, 0) end
  local r = ref[spec]
  if r == nil then error("models_arch.py printed nothing for " .. spec, 0) end
  if r.error then error(("torchvision cannot build %s: %s"):format(spec, r.error), 0) end
  return r
end

------------------------------------------------------------------------------
-- checks

local function shape_of(t) return t:dim() == 0 and "-" or table.concat(t:size(), ",") end

local function check_state_dict(model, r, label)
  local sd, names = model:state_dict(), model:state_dict_keys()
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

local function check_repr(model, r, label)
  local lines = {}
  for l in (tostring(model) .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  for i = 1, math.max(#lines, #r.repr) do
    if lines[i] ~= r.repr[i] then
      error(("%s: printed line %d is %q, torchvision's is %q"):format(label, i, tostring(lines[i]), tostring(r.repr[i])), 2)
    end
  end
end

local function all_equal(t, v) return t:numel() == 0 or (t:min():item() == v and t:max():item() == v) end

-- the sample std of t is within rel (at least 5%, wider for few elements) of want
local function check_std(t, want, label)
  local n = t:numel()
  local got = t:std():item()
  local tol = math.max(0.05, 5 / math.sqrt(2 * n))
  if math.abs(got / want - 1) > tol then
    error(("%s: std %.6g, expected %.6g (within %.1f%%, %d elements)"):format(label, got, want, tol * 100, n), 2)
  end
  local mean = t:mean():item()
  if math.abs(mean) > 6 * want / math.sqrt(n) then
    error(("%s: mean %.6g, expected about 0 (std %.6g, %d elements)"):format(label, mean, want, n), 2)
  end
end

local function fan_out(w)
  local s = w:size()
  local f = s[1]
  for i = 3, #s do f = f * s[i] end
  return f
end

-- the family's default initialisation (torchvision's constructor loops)
local function check_init(model, family, label)
  local counts = {Conv2d = 0, BatchNorm2d = 0, Linear = 0}
  for name, m in model:named_modules() do
    local ty = m:type_name()
    local where = label .. " " .. name
    if ty == "Conv2d" then
      counts.Conv2d = counts.Conv2d + 1
      check_std(m.weight, math.sqrt(2 / fan_out(m.weight)), where .. ".weight (kaiming_normal_ fan_out)")
      if m.bias ~= nil then assert.truthy(all_equal(m.bias, 0), where .. ".bias should be all 0") end
    elseif ty == "BatchNorm2d" then
      counts.BatchNorm2d = counts.BatchNorm2d + 1
      assert.truthy(all_equal(m.weight, 1), where .. ".weight should be all 1")
      assert.truthy(all_equal(m.bias, 0), where .. ".bias should be all 0")
      assert.truthy(all_equal(m.running_mean, 0), where .. ".running_mean should be all 0")
      assert.truthy(all_equal(m.running_var, 1), where .. ".running_var should be all 1")
      assert.equal(m.num_batches_tracked:item(), 0, where .. ".num_batches_tracked")
    elseif ty == "Linear" then
      counts.Linear = counts.Linear + 1
      if family == "resnet" then
        -- torch's default Linear init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
        local bound = 1 / math.sqrt(m.in_features)
        assert.truthy(m.weight:abs():max():item() <= bound, where .. ".weight exceeds 1/sqrt(in_features)")
        assert.truthy(m.bias:abs():max():item() <= bound, where .. ".bias exceeds 1/sqrt(in_features)")
        check_std(m.weight, bound / math.sqrt(3), where .. ".weight (uniform +-1/sqrt(in))")
      else
        check_std(m.weight, 0.01, where .. ".weight (normal 0, 0.01)")
        assert.truthy(all_equal(m.bias, 0), where .. ".bias should be all 0")
      end
    end
  end
  assert.truthy(counts.Conv2d > 0 and counts.Linear > 0, label .. ": no Conv2d or Linear found")
  return counts
end

local function input_for(family, n)
  if family == "vgg" then return av.randn(n or 2, 3, 32, 32) end
  return av.randn(n or 1, 3, 64, 64)
end

local function check_forward(model, family, classes, label)
  model:evaluate()
  local x = input_for(family)
  local y = av.no_grad(function() return model(x) end)
  assert.same(y:size(), {x:size(1), classes}, label .. ": output size")
  assert.truthy(y:isfinite():all():item() == 1, label .. ": output has non-finite values")
  return y
end

------------------------------------------------------------------------------

describe("registry", function()
  it("lists every model of the three families with its head and family", function()
    local listed = {}
    for _, n in ipairs(models.list()) do listed[n] = true end
    for _, m in ipairs(MODELS) do
      assert.truthy(listed[m[1]], m[1] .. " is not registered")
      local spec = models.spec(m[1])
      assert.equal(spec.head, m[3], m[1] .. " head")
      assert.equal(spec.family, m[2], m[1] .. " family")
      assert.equal(spec.input_size, 224, m[1] .. " input_size")
    end
    assert.same(models.spec("resnet50").options, {zero_init_residual = false})
    assert.same(models.spec("vgg16").options, {dropout = 0.5})
    assert.same(models.spec("mobilenet_v2").options, {width_mult = 1.0, dropout = 0.2})
  end)
  it("rejects an option of another family", function()
    assert.error_matches(function() models.create("vgg11", {width_mult = 2}) end, "unknown option 'width_mult'")
    assert.error_matches(function() models.create("resnet18", {dropout = 0.1}) end, "unknown option 'dropout'")
  end)
end)

for idx, entry in ipairs(MODELS) do
  local name, family, head, num_params = entry[1], entry[2], entry[3], entry[4]
  describe(name, function()
    local model
    local function get()
      if not model then
        av.manual_seed(1000 + idx)
        model = models.create(name)
      end
      return model
    end

    it("state_dict names (in order) and shapes equal torchvision's", function()
      local r = reference(name)
      check_state_dict(get(), r, name)
    end)

    it("module names and types, and the printed model, equal torchvision's", function()
      local r = reference(name)
      check_modules(get(), r, name)
      check_repr(get(), r, name)
    end)

    it("parameter count is torchvision's", function()
      local m = get()
      assert.equal(m:num_parameters(), num_params, name .. " parameters")
      assert.equal(m:num_parameters({trainable = true}), num_params, name .. " trainable parameters")
      if have_torchvision() then
        assert.equal(num_params, reference(name).num_params, name .. " torchvision's count")
      end
    end)

    it("default initialisation follows torchvision's", function()
      check_init(get(), family, name)
    end)

    it("forward of a small batch gives N x 1000", function()
      check_forward(get(), family, 1000, name)
    end)

    if name == "resnet18" or name == "resnet50" or name == "mobilenet_v2" or name == "vgg11_bn" then
      it("inference without autograd (in place) equals the recorded path, and backward reaches every parameter", function()
        local m = get()
        m:evaluate()
        local x = input_for(family, 2)
        local y0 = av.no_grad(function() return m(x) end)
        local y1 = m(x)
        assert.truthy(y1.requires_grad, "the output should require grad")
        -- (the convolution algorithm may differ between the calls: float32 rounding only)
        local scale = y0:abs():max():item()
        assert.tensor_near(y1:detach() / scale, y0 / scale, 1e-4, name .. " eval output with and without autograd")
        m:train()
        m:zero_grad()
        local y = m(x)
        y:sum():backward()
        for pn, p in m:named_parameters() do
          local g = p.grad
          assert.truthy(g ~= nil, pn .. " has no gradient")
          assert.same(g:size(), p:size(), pn .. " gradient size")
        end
        m:zero_grad()
        m:evaluate()
      end)
    end

    it("replace_head(200) gives a 200-way " .. head, function()
      local m = get()
      local old = m:get(head)
      local h = m:replace_head(200)
      assert.equal(h:type_name(), "Linear")
      assert.truthy(m:get(head) == h, "the head is not at " .. head)
      assert.equal(h.in_features, old.in_features, "in_features")
      assert.equal(h.out_features, 200, "out_features")
      local sd = m:state_dict()
      assert.same(sd[head .. ".weight"]:size(), {200, old.in_features})
      assert.same(sd[head .. ".bias"]:size(), {200})
      check_forward(m, family, 200, name .. " after replace_head")
    end)

    model = nil
    collectgarbage()
  end)
end

describe("options", function()
  for _, v in ipairs(VARIANTS) do
    local spec, name, opts = v[1], v[2], v[3]
    it(spec .. " matches torchvision's and builds as asked", function()
      av.manual_seed(77)
      local m = models.create(name, opts)
      local family = models.spec(name).family
      local classes = opts.num_classes or 1000
      if have_torchvision() then
        local r = reference(spec)
        check_state_dict(m, r, spec)
        check_modules(m, r, spec)
        check_repr(m, r, spec)
        assert.equal(m:num_parameters(), r.num_params, spec .. " parameters")
      end
      if opts.zero_init_residual then
        local n = 0
        for mn, mod in m:named_modules() do
          local ty = mod:type_name()
          local last = ty == "BasicBlock" and mod.bn2 or ty == "Bottleneck" and mod.bn3 or nil
          if last then
            n = n + 1
            assert.truthy(all_equal(last.weight, 0), mn .. ": the last batch norm weight should be 0")
            assert.truthy(all_equal(mod.bn1.weight, 1), mn .. ".bn1.weight should stay 1")
          end
        end
        assert.truthy(n > 0, "no residual blocks found")
      else
        check_init(m, family, spec)
      end
      if opts.dropout then
        local want = 0
        for _, mod in m:named_modules() do
          if mod:type_name() == "Dropout" then assert.equal(mod.p, opts.dropout, "dropout p"); want = want + 1 end
        end
        assert.equal(want, family == "vgg" and 2 or 1, "dropout layers")
      end
      check_forward(m, family, classes, spec)
    end)
  end

  it("zero_init_residual makes each residual block the identity path at init (resnet18)", function()
    av.manual_seed(5)
    local m = models.create("resnet18", {zero_init_residual = true}):evaluate()
    local block = m.layer1[2]
    local x = av.relu(av.randn(1, 64, 8, 8))
    local y = av.no_grad(function() return block(x) end)
    assert.tensor_near(y, x, 1e-6, "layer1.1 on a non-negative input")
  end)

  it("mobilenet_v2 width_mult rounds channels as torchvision's _make_divisible", function()
    local mb = require "aviary.models.mobilenet"
    assert.equal(mb.make_divisible(32 * 0.35, 8), 16)
    assert.equal(mb.make_divisible(16 * 0.35, 8), 8)
    assert.equal(mb.make_divisible(24 * 1.4, 8), 32)
    assert.equal(mb.make_divisible(1280 * 1.4, 8), 1792)
    assert.equal(mb.make_divisible(96 * 0.75, 8), 72)
    assert.equal(mb.make_divisible(10, 8), 16)
    assert.error_matches(function() models.create("mobilenet_v2", {width_mult = 0}) end, "width_mult")
  end)
end)
