-- aviary.nn: the Module system (registration, traversal, state, modes,
-- hooks, printing), each layer and criterion against torch.nn with the same
-- weights, gradient checks through modules, and the errors for bad input.
local av = require "aviary"
local nn = require "aviary.nn"
local optim = require "aviary.optim"
local parity = require "parity"
local gradcheck = require "gradcheck"

local function state_inputs(m, extra)
  local t = {}
  for k, v in pairs(m:state_dict()) do t["p_" .. k:gsub("%.", "__")] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function kwargs(m)
  local parts = {}
  for k in pairs(m:state_dict()) do
    local n = "p_" .. k:gsub("%.", "__")
    parts[#parts + 1] = n .. "=" .. n
  end
  table.sort(parts)
  return table.concat(parts, ", ")
end

-- checks module m against the torch module built by `ctor` (Python), output and input gradient
local function layer_parity(name, m, ctor, x, opts)
  local xg = x:clone():requires_grad_(true)
  local y = m(xg)
  local g = av.randn(y:size())
  local gx = av.grad(y, {xg}, {grad_outputs = g})[1]
  local kw = kwargs(m)
  local expr
  if ctor:find("%s", 1, true) then expr = ("vjp(%s, x, v=g)"):format(ctor:format(kw))
  elseif kw == "" then expr = ("vjp(%s, x, v=g)"):format(ctor)
  else expr = ("vjp(load(%s, %s), x, v=g)"):format(ctor, kw) end
  local inputs = state_inputs(m, {x = x, g = g})
  parity.check(name, expr, inputs, {y:detach(), gx}, opts)
end

describe("layers against torch.nn", function()
  av.manual_seed(11)
  local x4 = av.randn(2, 6, 9, 9)
  layer_parity("Conv2d s2 p1 bias", nn.Conv2d(6, 4, 3, {stride = 2, padding = 1}), "nn.Conv2d(6, 4, 3, stride=2, padding=1)", x4)
  layer_parity("Conv2d groups dilation no bias", nn.Conv2d(6, 9, {3, 2}, {dilation = 2, groups = 3, bias = false, padding = {1, 2}}),
    "nn.Conv2d(6, 9, (3, 2), dilation=2, groups=3, bias=False, padding=(1, 2))", x4)
  layer_parity("Linear", nn.Linear(9, 5), "nn.Linear(9, 5)", av.randn(3, 9))
  layer_parity("Linear no bias 3-d", nn.Linear(9, 5, {bias = false}), "nn.Linear(9, 5, bias=False)", av.randn(2, 3, 9))
  local bn = nn.BatchNorm2d(6)
  bn:evaluate()
  av.no_grad(function()
    bn.running_mean:copy_(av.randn(6)); bn.running_var:copy_(av.rand(6) + 0.5)
    bn.weight:copy_(av.rand(6) + 0.5); bn.bias:copy_(av.randn(6))
  end)
  layer_parity("BatchNorm2d eval", bn, "load(nn.BatchNorm2d(6), %s).eval()", x4)
  layer_parity("ReLU", nn.ReLU(), "nn.ReLU()", x4)
  layer_parity("ReLU6", nn.ReLU6(), "nn.ReLU6()", x4 * 4)
  layer_parity("LeakyReLU", nn.LeakyReLU({negative_slope = 0.2}), "nn.LeakyReLU(0.2)", x4)
  layer_parity("ELU", nn.ELU({alpha = 0.7}), "nn.ELU(0.7)", x4)
  layer_parity("GELU tanh", nn.GELU({approximate = "tanh"}), "nn.GELU(approximate='tanh')", x4)
  layer_parity("SiLU", nn.SiLU(), "nn.SiLU()", x4)
  layer_parity("Sigmoid", nn.Sigmoid(), "nn.Sigmoid()", x4)
  layer_parity("Tanh", nn.Tanh(), "nn.Tanh()", x4)
  layer_parity("Hardswish", nn.Hardswish(), "nn.Hardswish()", x4)
  layer_parity("Hardsigmoid", nn.Hardsigmoid(), "nn.Hardsigmoid()", x4)
  layer_parity("Softplus", nn.Softplus({beta = 2}), "nn.Softplus(beta=2)", x4)
  layer_parity("Softmax", nn.Softmax(2), "nn.Softmax(dim=1)", x4)
  layer_parity("LogSoftmax", nn.LogSoftmax(-1), "nn.LogSoftmax(dim=-1)", x4)
  layer_parity("MaxPool2d ceil", nn.MaxPool2d(3, {stride = 2, ceil_mode = true}), "nn.MaxPool2d(3, stride=2, ceil_mode=True)", x4)
  layer_parity("MaxPool2d pad", nn.MaxPool2d(3, {stride = 2, padding = 1}), "nn.MaxPool2d(3, stride=2, padding=1)", x4)
  layer_parity("AvgPool2d", nn.AvgPool2d(3, {stride = 1, padding = 1, count_include_pad = false}),
    "nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)", x4)
  layer_parity("AdaptiveAvgPool2d", nn.AdaptiveAvgPool2d({2, 3}), "nn.AdaptiveAvgPool2d((2, 3))", x4)
  layer_parity("AdaptiveMaxPool2d", nn.AdaptiveMaxPool2d(1), "nn.AdaptiveMaxPool2d(1)", x4)
  layer_parity("Flatten", nn.Flatten(), "nn.Flatten()", x4)
  layer_parity("Flatten 3..4", nn.Flatten(3, 4), "nn.Flatten(2, 3)", x4)
  layer_parity("Identity", nn.Identity(), "nn.Identity()", x4)
  local seq = nn.Sequential(nn.Conv2d(6, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
  seq:evaluate()
  layer_parity("Sequential eval", seq,
    "load(nn.Sequential(nn.Conv2d(6, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)), %s).eval()", x4)
  parity.run("layers")
end)

-- the same three passes of training-mode batch norm in aviary and torch
describe("BatchNorm2d training against torch", function()
  av.manual_seed(5)
  local xs = {av.randn(4, 3, 5, 5), av.randn(4, 3, 5, 5) * 2 + 1, av.randn(4, 3, 5, 5) - 1}
  for _, case in ipairs({{"momentum 0.1", {}, "nn.BatchNorm2d(3)"},
                         {"momentum 0.3 eps 1e-3", {momentum = 0.3, eps = 1e-3}, "nn.BatchNorm2d(3, momentum=0.3, eps=1e-3)"},
                         {"cumulative (momentum false)", {momentum = false}, "nn.BatchNorm2d(3, momentum=None)"}}) do
    local bn = nn.BatchNorm2d(3, case[2])
    local outs = {}
    for i, x in ipairs(xs) do outs[i] = bn(x):detach() end
    local expr = ("(lambda m: [m(a) for a in (x1, x2, x3)] + [m.running_mean, m.running_var, m.num_batches_tracked])(%s)")
      :format(case[3])
    parity.check("BatchNorm2d train " .. case[1], expr, {x1 = xs[1], x2 = xs[2], x3 = xs[3]},
      {outs[1], outs[2], outs[3], bn.running_mean, bn.running_var, bn.num_batches_tracked})
  end
  parity.run("batchnorm")
end)

describe("criteria against torch.nn", function()
  av.manual_seed(3)
  local x, t = av.randn(6, 5), av.tensor({1, 5, 2, 2, 3, 4})
  local w = av.rand(5) + 0.5
  local function crit(name, m, ctor, inputs, target, tshift)
    local xg = inputs:clone():requires_grad_(true)
    local l = m(xg, target)
    local g = av.grad(l, {xg})[1]
    parity.check(name, ("vjp(lambda a: %s(a, t%s), x)"):format(ctor, tshift or ""), {x = inputs, t = target, w = w}, {l:detach(), g})
  end
  crit("CrossEntropyLoss", nn.CrossEntropyLoss(), "nn.CrossEntropyLoss()", x, t, " - 1")
  crit("CrossEntropyLoss smoothing weight", nn.CrossEntropyLoss({label_smoothing = 0.1, weight = w}),
    "nn.CrossEntropyLoss(label_smoothing=0.1, weight=w)", x, t, " - 1")
  crit("CrossEntropyLoss sum", nn.CrossEntropyLoss({reduction = "sum"}), "nn.CrossEntropyLoss(reduction='sum')", x, t, " - 1")
  crit("NLLLoss", nn.NLLLoss(), "nn.NLLLoss()", x:log_softmax(2), t, " - 1")
  local y = av.randn(6, 5)
  crit("MSELoss", nn.MSELoss(), "nn.MSELoss()", x, y)
  crit("L1Loss", nn.L1Loss({reduction = "sum"}), "nn.L1Loss(reduction='sum')", x, y)
  crit("BCEWithLogitsLoss", nn.BCEWithLogitsLoss(), "nn.BCEWithLogitsLoss()", x, av.rand(6, 5))
  parity.run("criteria")
end)

describe("Module", function()
  it("prints like PyTorch", function()
    if not av_test.have_torch() then skip("python3-torch not installed") end
    local m = nn.Sequential(nn.Conv2d(3, 64, 7, {stride = 2, padding = 3, bias = false}), nn.BatchNorm2d(64),
      nn.ReLU({inplace = true}), nn.MaxPool2d(3, {stride = 2, padding = 1}),
      nn.Sequential(nn.Conv2d(64, 64, 3, {padding = 1, groups = 2, dilation = 2}), nn.Identity()),
      nn.AdaptiveAvgPool2d({1, 1}), nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 200),
      nn.LeakyReLU({negative_slope = 0.2}), nn.BatchNorm2d(5, {momentum = false, eps = 1e-3}))
    local ok, out = av_test.python("-c", [[
import torch.nn as nn
print(nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
  nn.MaxPool2d(3, stride=2, padding=1), nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, groups=2, dilation=2), nn.Identity()),
  nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 200), nn.LeakyReLU(0.2),
  nn.BatchNorm2d(5, momentum=None, eps=1e-3)))]])
    assert.truthy(ok, out)
    assert.equal(out:gsub("%s+$", ""), tostring(m))
  end)

  it("registers parameters, buffers and children in order, with PyTorch's names", function()
    local Net = nn.Module:extend("Net")
    function Net:__init()
      self.conv = nn.Conv2d(1, 2, 3)
      self.bn = nn.BatchNorm2d(2)
      self.scale = nn.Parameter(av.ones(1))
      self:register_buffer("steps", av.zeros(1))
      self:register_buffer("cache", av.zeros(1), {persistent = false})
      self.plain = av.zeros(3) -- a tensor that is not a parameter stays an attribute
      self.head = nn.Sequential(nn.Flatten(), nn.Linear(2, 4))
    end
    function Net:forward(x) return self.head(av.relu(self.bn(self.conv(x)))) * self.scale end
    local n = Net()
    local names = {}
    for k in n:named_parameters() do names[#names + 1] = k end
    assert.same({"scale", "conv.weight", "conv.bias", "bn.weight", "bn.bias", "head.1.weight", "head.1.bias"}, names)
    local order = n:state_dict_keys()
    assert.same({"scale", "steps", "conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
                 "bn.running_var", "bn.num_batches_tracked", "head.1.weight", "head.1.bias"}, order)
    assert.equal(#n:buffers(), 5)
    assert.equal(#n:children(), 3)
    assert.equal(#n:modules(), 6)
    assert.equal(2 * 9 + 2 + 2 + 2 + 8 + 4 + 1, n:num_parameters())
    local y = n(av.randn(2, 1, 3, 3))
    assert.same({2, 4}, y:size())
    assert.truthy(tostring(n):find("^Net%(\n  %(conv%): Conv2d"))
  end)

  it("finds modules and tensors by dotted name, and replaces them", function()
    local m = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), nn.Linear(3, 1))
    assert.equal("Linear", m:get("0.0"):type_name())
    assert.same({3, 2}, m:get("0.0.weight"):size())
    assert.equal(m:get("1"), m[2])
    m:set("0.1", nn.Tanh())
    assert.equal("Tanh", m[1][2]:type_name())
    assert.error_matches(function() m:get("0.2") end, "has no '2'")
    assert.error_matches(function() m:get("0.0.wieght") end, "did you mean 'weight'")
    assert.error_matches(function() m:get("0.0.weight.x") end, "is not a module")
  end)

  it("runs forward pre-hooks, forward hooks (which may replace the output) and removes them", function()
    local lin = nn.Linear(3, 2)
    local seen_in, seen_out
    local h1 = lin:register_forward_pre_hook(function(_, inp) seen_in = inp[1] end)
    local h2 = lin:register_forward_hook(function(_, _, out) seen_out = out; return out * 2 end)
    local x = av.randn(4, 3)
    local y = lin(x)
    assert.equal(x, seen_in)
    assert.truthy((y - seen_out * 2):abs():max():item() == 0)
    h1.remove(); h2.remove()
    local y2 = lin(x)
    assert.truthy((y2 - seen_out):abs():max():item() == 0)
  end)

  it("gives backward hooks the module's own input and output gradients (Grad-CAM)", function()
    av.manual_seed(9)
    local conv = nn.Conv2d(2, 3, 3, {padding = 1})
    local net = nn.Sequential(nn.Conv2d(1, 2, 3, {padding = 1}), conv, nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 1))
    local acts, gin, gout
    conv:register_forward_hook(function(_, _, o) acts = o end)
    conv:register_full_backward_hook(function(_, gi, go) gin, gout = gi[1], go[1] end)
    local x = av.randn(2, 1, 4, 4)
    local y = net(x):sum()
    -- reference: the gradient of y with respect to conv's output and input, via av.grad
    local a_in = net[1](x)
    local a_out = conv(a_in)
    local y2 = net[5](net[4](net[3](a_out))):sum()
    local ref = av.grad(y2, {a_out, a_in})
    y:backward()
    assert.truthy(gout ~= nil and gin ~= nil)
    assert.truthy((gout - ref[1]):abs():max():item() < 1e-6)
    assert.truthy((gin - ref[2]):abs():max():item() < 1e-6)
    assert.same({2, 3, 4, 4}, acts:size())
  end)

  it("lets a backward hook replace the input gradient, and a pre-hook the output gradient", function()
    local lin = nn.Linear(3, 3)
    lin:register_full_backward_pre_hook(function(_, go) return {go[1] * 0} end)
    local x = av.randn(2, 3):requires_grad_(true)
    lin(x):sum():backward()
    assert.equal(0, x.grad:abs():max():item())
    local lin2 = nn.Linear(3, 3)
    lin2:register_full_backward_hook(function(_, gi) return {gi[1] * 0 + 1} end)
    local x2 = av.randn(2, 3):requires_grad_(true)
    lin2(x2):sum():backward()
    assert.equal(1, x2.grad:min():item())
  end)

  it("runs ReLU(inplace=true) in place only when no graph is recorded", function()
    local r = nn.ReLU({inplace = true})
    local x = av.tensor({-1, 2})
    local y = r(x)
    assert.equal(0, x[1])                  -- modified in place, as torch does
    assert.equal(y, r(y))
    local w = av.tensor({-1.0, 2.0}):requires_grad_(true)
    local z = nn.ReLU6({inplace = true})(w * 4)
    z:sum():backward()
    assert.same({0, 0}, w.grad:tolist())   -- 8 is clipped to 6: no gradient
    assert.same({-1, 2}, w:detach():tolist())
  end)

  it("switches train and evaluate mode through the tree", function()
    local m = nn.Sequential(nn.Dropout(0.9), nn.Sequential(nn.BatchNorm2d(1)))
    m:evaluate()
    for _, c in ipairs(m:modules()) do assert.equal(false, c.training) end
    local x = av.ones(10, 10)
    assert.equal(100, m[1](x):sum():item())
    m:train()
    assert.equal(true, m[2][1].training)
    assert.truthy(m[1](x):eq(0):sum():item() > 50)
  end)

  it("freezes a subtree and trains parameter groups with their own options", function()
    local m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    m[1]:requires_grad_(false)
    assert.equal(10, m:num_parameters({trainable = true}))
    local x = av.randn(5, 4)
    m(x):sum():backward()
    assert.equal(nil, m[1].weight.grad)
    assert.truthy(m[3].weight.grad ~= nil)
    m[1]:requires_grad_(true)
    local opt = optim.SGD({{params = m[1]:parameters(), lr = 0}, {params = m[3]:parameters()}}, {lr = 0.1})
    local w1, w3 = m[1].weight:clone(), m[3].weight:clone()
    m:zero_grad()
    m(x):sum():backward()
    opt:step()
    assert.equal(0, (m[1].weight - w1):abs():max():item())
    assert.truthy((m[3].weight - w3):abs():max():item() > 0)
    m:zero_grad()
    assert.equal(nil, m[3].weight.grad)
  end)

  it("round-trips state_dict and reports missing, unexpected and mismatched keys", function()
    local a = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    local b = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    a[2].running_mean:fill_(3)
    b:load_state_dict(a:state_dict())
    assert.equal(0, (a[1].weight - b[1].weight):abs():max():item())
    assert.equal(3, b[2].running_mean:min():item())
    local sd = a:state_dict()
    sd["0.bias"] = nil
    sd["2.weight"] = av.ones(1)
    assert.error_matches(function() b:load_state_dict(sd) end, "missing keys: 0.bias; unexpected keys: 2.weight")
    local rep = b:load_state_dict(sd, {strict = false})
    assert.same({"0.bias"}, rep.missing_keys)
    assert.same({"2.weight"}, rep.unexpected_keys)
    local c = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(2))
    assert.error_matches(function() c:load_state_dict(a:state_dict()) end,
      "0.weight: checkpoint has 2x1x3x3, the model has 3x1x3x3")
    assert.error_matches(function() b:load_state_dict(a:state_dict(), {strcit = true}) end, "did you mean 'strict'")
  end)

  it("saves and loads safetensors files", function()
    local path = av_test.tmpname(".safetensors")
    local a = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    a(av.randn(4, 3))
    a:save(path)
    local b = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    b:load(path)
    assert.equal(0, (a[1].weight - b[1].weight):abs():max():item())
    assert.equal(1, b[2].num_batches_tracked:item())
    os.remove(path)
    assert.error_matches(function() b:load(path) end, "cannot open weights file")
  end)

  it("converts dtype and checks gradients through modules in float64", function()
    av.manual_seed(2)
    local m = nn.Sequential(nn.Conv2d(2, 3, 3, {padding = 1, stride = 2}), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(),
      nn.Linear(12, 2)):double()
    assert.equal("float64", m[1].weight:dtype())
    assert.equal(true, m[1].weight.requires_grad)
    local x = av.randn(2, 2, 4, 4, {dtype = "float64"})
    gradcheck.check(function(xx) return m(xx) end, {x})
    local w = m[1].weight
    gradcheck.check(function(ww)
      return av.conv2d(x, ww, m[1].bias, {stride = 2, padding = 1})
    end, {w:detach():clone()})
  end)

  it("visits children before the parent in apply, and lists modules in pre-order", function()
    local m = nn.Sequential(nn.Linear(1, 1), nn.Sequential(nn.ReLU()))
    local order = {}
    m:apply(function(x) order[#order + 1] = x:type_name() end)
    assert.same({"Linear", "ReLU", "Sequential", "Sequential"}, order)
    local names = {}
    for k in m:named_modules() do names[#names + 1] = k end
    assert.same({"", "0", "1", "1.0"}, names)
  end)

  it("has ModuleList and ModuleDict", function()
    local l = nn.ModuleList({nn.Linear(2, 2), nn.Linear(2, 3)})
    l:append(nn.ReLU())
    assert.equal(3, #l)
    assert.equal(3, l[2].out_features)
    local order = l:state_dict_keys()
    assert.same({"0.weight", "0.bias", "1.weight", "1.bias"}, order)
    assert.error_matches(function() l(av.zeros(1)) end, "ModuleList has no forward")
    local d = nn.ModuleDict({{"b", nn.Linear(1, 1)}, {"a", nn.ReLU()}})
    assert.same({"b", "a"}, d:keys())
    assert.equal("ReLU", d.a:type_name())
  end)

  it("rejects bad construction and assignment with clear messages", function()
    assert.error_matches(function() nn.Conv2d(3, 4, 3, {strid = 2}) end, "unknown option 'strid' (did you mean 'stride'?)")
    assert.error_matches(function() nn.Conv2d(3, 4, 3, {groups = 2}) end, "divisible by groups")
    assert.error_matches(function() nn.Linear(0, 3) end, "in_features must be a positive integer")
    assert.error_matches(function() nn.Dropout(1.5) end, "probability")
    assert.error_matches(function() nn.Sequential(nn.ReLU(), 3) end, "argument 2 must be a module")
    local M = nn.Module:extend("NoForward")
    assert.error_matches(function() M()(av.zeros(1)) end, "NoForward has no forward method")
    local s = nn.Sequential(nn.ReLU())
    assert.error_matches(function() s[1] = 5 end, "must be a module")
    assert.error_matches(function() s["0"] = 5 end, "cannot assign a number to child module '0'")
    assert.error_matches(function() return nn.Conv3d end, "aviary.nn has no 'Conv3d' (did you mean 'Conv2d'?)")
    assert.error_matches(function() nn.BatchNorm2d(3)(av.zeros(2, 3)) end, "expected a 4d input")
    assert.error_matches(function() nn.Linear(3, 2)(av.zeros(2, 4)) end, "")
  end)
end)
