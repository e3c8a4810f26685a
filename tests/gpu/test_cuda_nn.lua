-- The library-backed CUDA ops against the CPU on the same inputs: every
-- forward and every gradient, with relative-error thresholds per dtype
-- (float32 ~1e-5, TF32 ~5e-3, float16 ~5e-3, bfloat16 ~3e-2, float64 ~1e-10),
-- ‖gpu - cpu‖ / ‖cpu‖ in float64. Half-precision cases round their inputs to
-- the half type first, so both sides see identical inputs.
-- Skips cleanly on a machine without a CUDA device.
-- usage: aviary tests/lua/runner.lua tests/gpu/test_cuda_nn.lua
local av = require "aviary"
local F = require "aviary.nn.functional"
local optim = require "aviary.optim"
local amp = require "aviary.amp"

local function gpu()
  if not (av.cuda and av.cuda.is_available()) then skip("no CUDA device") end
end

local TOL = {float32 = 2e-5, float64 = 1e-10, float16 = 5e-3, bfloat16 = 3e-2}

local function relerr(a, b)
  local x, y = a:cpu():double(), b:cpu():double()
  local den = y:norm():item()
  local num = (x - y):norm():item()
  return den == 0 and num or num / den
end

local function close(what, got, ref, tol)
  local e = relerr(got, ref)
  assert.truthy(e <= tol, ("%s: relative error %.3g above %.3g"):format(what, e, tol))
end

-- a float view for losses: float64 stays, half types go up to float32
local function up(t) return t:dtype() == "float64" and t or t:float() end

-- Runs fn on CPU copies and on CUDA copies (in dtype) of inputs; compares
-- the outputs and the gradients of the inputs marked grad = true.
-- inputs: list of {tensor, grad = bool, keep = bool (no dtype cast, e.g. targets)}
local function parity(name, fn, inputs, o)
  o = o or {}
  local dt = o.dtype or "float32"
  local tol = o.tol or TOL[dt]
  local gtol = o.gtol or tol
  local cpu_in, gpu_in = {}, {}
  for i, spec in ipairs(inputs) do
    local x = spec[1]
    if not spec.keep and (x:dtype() == "float32" or x:dtype() == "float64") then
      -- identical values on both sides: rounded through the compute dtype
      x = x:to(dt)
      local ref_dt = dt == "float64" and "float64" or "float32"
      cpu_in[i] = x:to(ref_dt):clone()
      gpu_in[i] = o.prepare and o.prepare(x:cuda(), i) or x:cuda()
    else
      cpu_in[i] = x:clone()
      gpu_in[i] = x:cuda()
    end
    if spec.grad then
      cpu_in[i]:requires_grad_(true)
      gpu_in[i]:requires_grad_(true)
    end
  end
  local yc = fn(table.unpack(cpu_in))
  local yg = fn(table.unpack(gpu_in))
  assert.equal(yg:device():sub(1, 4), "cuda", name .. ": result device")
  close(name .. " forward", yg, yc, tol)
  local any = false
  for _, spec in ipairs(inputs) do any = any or spec.grad end
  if not any then return yc, yg end
  av.manual_seed(99)
  local gy = av.randn(table.unpack(yc:size())):to(yc:dtype())
  local lc = (up(yc) * up(gy)):sum()
  lc:backward()
  local lg = (up(yg) * gy:cuda():to(up(yg):dtype())):sum()
  lg:backward()
  for i, spec in ipairs(inputs) do
    if spec.grad then close(("%s grad of input %d"):format(name, i), gpu_in[i].grad, cpu_in[i].grad, gtol) end
  end
  return yc, yg
end

local function randn(...) return av.randn(...) end

describe("cuda conv2d", function()
  local shapes = {
    {"3x3 pad 1", {4, 8, 12, 12}, {16, 8, 3, 3}, {padding = 1}},
    {"3x3 stride 2", {4, 8, 13, 13}, {16, 8, 3, 3}, {stride = 2, padding = 1}},
    {"dilation 2", {2, 6, 15, 15}, {8, 6, 3, 3}, {dilation = 2, padding = 2}},
    {"groups 2", {2, 8, 10, 10}, {12, 4, 3, 3}, {groups = 2, padding = 1}},
    {"depthwise", {2, 8, 10, 10}, {8, 1, 3, 3}, {groups = 8, padding = 1}},
    {"1x1", {4, 32, 7, 7}, {64, 32, 1, 1}, {}},
    {"7x7 stride 2 (resnet stem)", {2, 3, 32, 32}, {8, 3, 7, 7}, {stride = 2, padding = 3}},
    {"padding same, even kernel", {2, 4, 9, 9}, {6, 4, 4, 4}, {padding = "same"}},
    {"asymmetric rectangle", {2, 3, 11, 8}, {5, 3, 3, 2}, {stride = {2, 1}, padding = {1, 0}}},
  }
  for _, s in ipairs(shapes) do
    it(s[1] .. " float32, with bias", function()
      gpu()
      av.manual_seed(1)
      local x, w, b = randn(table.unpack(s[2])), randn(table.unpack(s[3])), randn(s[3][1])
      parity("conv2d " .. s[1], function(x_, w_, b_) return F.conv2d(x_, w_, b_, s[4]) end,
        {{x, grad = true}, {w, grad = true}, {b, grad = true}}, {tol = 1e-4})
    end)
  end
  for _, dt in ipairs{"float64", "float16", "bfloat16"} do
    it("3x3 " .. dt, function()
      gpu()
      av.manual_seed(2)
      local x, w, b = randn(4, 8, 12, 12), randn(16, 8, 3, 3), randn(16)
      parity("conv2d " .. dt, function(x_, w_, b_) return F.conv2d(x_, w_, b_, {padding = 1}) end,
        {{x, grad = true}, {w, grad = true}, {b, grad = true}}, {dtype = dt})
    end)
  end
  it("TF32 when allowed", function()
    gpu()
    amp.set_allow_tf32(true)
    local ok, err = pcall(function()
      av.manual_seed(3)
      parity("conv2d tf32", function(x_, w_) return F.conv2d(x_, w_, nil, {padding = 1}) end,
        {{randn(8, 64, 14, 14), grad = true}, {randn(64, 64, 3, 3), grad = true}}, {tol = 5e-3})
    end)
    amp.set_allow_tf32(false)
    assert.truthy(ok, err)
  end)
  it("channels-last input gives a channels-last result with the same values", function()
    gpu()
    av.manual_seed(4)
    local function nhwc(t) return t:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3) end
    local yc, yg = parity("conv2d channels-last", function(x_, w_, b_) return F.conv2d(x_, w_, b_, {padding = 1}) end,
      {{randn(4, 16, 10, 10), grad = true}, {randn(32, 16, 3, 3), grad = true}, {randn(32), grad = true}},
      {tol = 1e-4, prepare = function(t, i) return i == 1 and nhwc(t) or t end})
    assert.equal(yg:stride()[2], 1, "channel stride of the result")
  end)
  it("benchmark mode picks algorithms by timing and gives the same results", function()
    gpu()
    av.cuda.benchmark = true
    local ok, err = pcall(function()
      av.manual_seed(5)
      parity("conv2d benchmark", function(x_, w_) return F.conv2d(x_, w_, nil, {stride = 2, padding = 1}) end,
        {{randn(8, 16, 20, 20), grad = true}, {randn(32, 16, 3, 3), grad = true}}, {tol = 1e-4})
    end)
    av.cuda.benchmark = false
    assert.truthy(ok, err)
  end)
  it("conv2d_input and conv2d_weight", function()
    gpu()
    av.manual_seed(6)
    local x, w, gy = randn(2, 4, 9, 9), randn(6, 4, 3, 3), randn(2, 6, 5, 5)
    local o = {stride = 2, padding = 1}
    close("conv2d_input", av.conv2d_input({2, 4, 9, 9}, w:cuda(), gy:cuda(), o), av.conv2d_input({2, 4, 9, 9}, w, gy, o), 1e-4)
    close("conv2d_weight", av.conv2d_weight(x:cuda(), {6, 4, 3, 3}, gy:cuda(), o), av.conv2d_weight(x, {6, 4, 3, 3}, gy, o), 1e-4)
  end)
  it("mixed devices are an error naming both", function()
    gpu()
    assert.error_matches(function() F.conv2d(randn(1, 2, 5, 5):cuda(), randn(3, 2, 3, 3)) end, "cuda:0")
  end)
end)

describe("cuda batch_norm", function()
  local function bn_case(name, xs, training, o)
    it(name, function()
      gpu()
      av.manual_seed(7)
      local C = xs[2]
      local x, w, b = randn(table.unpack(xs)) * 2 + 0.5, randn(C), randn(C)
      local rm_c, rv_c = randn(C) * 0.1, av.rand(C) + 0.5
      local rm_g, rv_g = rm_c:cuda(), rv_c:cuda()
      local dt = o and o.dtype or "float32"
      local calls = 0
      parity(name, function(x_, w_, b_)
        calls = calls + 1
        local rm, rv = calls == 1 and rm_c or rm_g, calls == 1 and rv_c or rv_g
        return F.batch_norm(x_, rm, rv, (not (o and o.noaffine)) and w_ or nil, (not (o and o.noaffine)) and b_ or nil,
          {training = training, momentum = 0.3, eps = 1e-5})
      end, {{x, grad = true}, {w, grad = not (o and o.noaffine), keep = dt ~= "float32"},
            {b, grad = not (o and o.noaffine), keep = dt ~= "float32"}},
        {dtype = dt, tol = o and o.tol, prepare = o and o.prepare})
      close(name .. " running_mean", rm_g, rm_c, 1e-5)
      close(name .. " running_var (unbiased)", rv_g, rv_c, 1e-5)
    end)
  end
  bn_case("training 4-d", {8, 6, 7, 7}, true)
  bn_case("training 2-d", {16, 10}, true)
  bn_case("evaluation 4-d (constant statistics)", {4, 6, 5, 5}, false)
  bn_case("training without affine parameters", {4, 6, 5, 5}, true, {noaffine = true})
  bn_case("training bfloat16 input, float32 parameters", {8, 6, 7, 7}, true, {dtype = "bfloat16"})
  bn_case("training channels-last", {4, 6, 5, 5}, true,
    {prepare = function(t, i) return i == 1 and t:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3) or t end})
end)

describe("cuda pooling", function()
  local cases = {
    {"max 3x3 s2 p1", function(x) return F.max_pool2d(x, 3, {stride = 2, padding = 1}) end},
    {"max ceil mode", function(x) return F.max_pool2d(x, 3, {stride = 2, ceil_mode = true}) end},
    {"max dilation 2", function(x) return F.max_pool2d(x, 2, {stride = 1, dilation = 2}) end},
    {"avg 3x3 s2 p1 without pad count", function(x) return F.avg_pool2d(x, 3, {stride = 2, padding = 1, count_include_pad = false}) end},
    {"avg 2x2 divisor override", function(x) return F.avg_pool2d(x, 2, {divisor_override = 3}) end},
    {"avg ceil mode with pad", function(x) return F.avg_pool2d(x, 3, {stride = 2, padding = 1, ceil_mode = true}) end},
    {"adaptive avg to 1x1", function(x) return F.adaptive_avg_pool2d(x, 1) end},
    {"adaptive avg to 3x4", function(x) return F.adaptive_avg_pool2d(x, {3, 4}) end},
    {"adaptive max to 3x3", function(x) return F.adaptive_max_pool2d(x, 3) end},
  }
  for _, c in ipairs(cases) do
    for _, dt in ipairs{"float32", "float64", "bfloat16"} do
      it(c[1] .. " " .. dt, function()
        gpu()
        av.manual_seed(8)
        parity(c[1], c[2], {{randn(3, 5, 11, 13), grad = true}}, {dtype = dt})
      end)
    end
  end
  it("max pool indices as the CPU returns them (1-based, unbatched too)", function()
    gpu()
    av.manual_seed(9)
    for _, x in ipairs{randn(2, 3, 9, 9), randn(3, 8, 8)} do
      local _, ic = F.max_pool2d(x, 3, {stride = 2, return_indices = true})
      local _, ig = F.max_pool2d(x:cuda(), 3, {stride = 2, return_indices = true})
      assert.same(ig:cpu():tolist(), ic:tolist())
      local _, ac = F.adaptive_max_pool2d(x, 4, {return_indices = true})
      local _, ag = F.adaptive_max_pool2d(x:cuda(), 4, {return_indices = true})
      assert.same(ag:cpu():tolist(), ac:tolist())
    end
  end)
  it("a NaN wins the max, as on the CPU", function()
    gpu()
    local x = av.zeros(1, 1, 4, 4)
    x[1][1][2][3] = 0 / 0
    local yc = F.max_pool2d(x, 2)
    local yg = F.max_pool2d(x:cuda(), 2):cpu()
    assert.truthy(yg[1][1][1][2] ~= yg[1][1][1][2] and yc[1][1][1][2] ~= yc[1][1][1][2])
  end)
end)

describe("cuda softmax", function()
  for _, c in ipairs{{"rows", {6, 200}, 2}, {"columns", {3, 5, 4, 6}, 2}, {"last of 3-d", {4, 3, 1000}, 3}} do
    for _, lg in ipairs{false, true} do
      it((lg and "log_softmax " or "softmax ") .. c[1], function()
        gpu()
        av.manual_seed(10)
        parity(c[1], function(x) return lg and F.log_softmax(x, c[3]) or F.softmax(x, c[3]) end,
          {{randn(table.unpack(c[2])) * 3, grad = true}})
      end)
    end
  end
end)

describe("cuda cross_entropy and nll_loss", function()
  local function targets(n, C, shape)
    local t = av.randint(1, C + 1, shape or {n})
    return t
  end
  local cases = {
    {"mean", {}},
    {"sum", {reduction = "sum"}},
    {"none", {reduction = "none"}},
    {"class weights", {weight = true}},
    {"ignore_index", {ignore_index = 3}},
    {"label smoothing", {label_smoothing = 0.1}},
    {"label smoothing and weights", {label_smoothing = 0.2, weight = true}},
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      gpu()
      av.manual_seed(11)
      local N, C = 16, 200
      local x, t, w = randn(N, C) * 2, targets(N, C), av.rand(C) + 0.5
      t[1] = 3
      local calls = 0
      parity("cross_entropy " .. c[1], function(x_, t_)
        calls = calls + 1
        local o = {}
        for k, v in pairs(c[2]) do o[k] = v end
        if o.weight then o.weight = calls == 1 and w or w:cuda() end
        local l = F.cross_entropy(x_, t_, o)
        return l:dim() == 0 and l:view(1) or l
      end, {{x, grad = true}, {t, keep = true}})
    end)
  end
  it("spatial targets (N, C, H, W)", function()
    gpu()
    av.manual_seed(12)
    parity("cross_entropy spatial", function(x_, t_) return F.cross_entropy(x_, t_):view(1) end,
      {{randn(2, 5, 4, 3), grad = true}, {targets(0, 5, {2, 4, 3}), keep = true}})
  end)
  it("nll_loss after log_softmax", function()
    gpu()
    av.manual_seed(13)
    parity("nll_loss", function(x_, t_) return F.nll_loss(F.log_softmax(x_, 2), t_, {ignore_index = 2}):view(1) end,
      {{randn(8, 10), grad = true}, {targets(8, 10), keep = true}})
  end)
  it("an out-of-range target is an error naming it", function()
    gpu()
    assert.error_matches(function() F.cross_entropy(randn(2, 4):cuda(), av.tensor({1, 9}):cuda()) end, "target 9")
  end)
  it("a bfloat16 input computes in float32", function()
    gpu()
    local l = F.cross_entropy(randn(4, 7):cuda():to("bfloat16"), targets(4, 7):cuda())
    assert.equal(l:dtype(), "float32")
  end)
end)

describe("cuda matrix products", function()
  it("linear with and without bias, 3-d input", function()
    gpu()
    av.manual_seed(14)
    parity("linear", function(x, w, b) return F.linear(x, w, b) end,
      {{randn(4, 5, 32), grad = true}, {randn(200, 32), grad = true}, {randn(200), grad = true}})
    parity("linear no bias", function(x, w) return F.linear(x, w) end, {{randn(7, 16), grad = true}, {randn(9, 16), grad = true}})
  end)
  it("linear bfloat16 and float16", function()
    gpu()
    av.manual_seed(15)
    for _, dt in ipairs{"bfloat16", "float16"} do
      parity("linear " .. dt, function(x, w, b) return F.linear(x, w, b) end,
        {{randn(16, 64), grad = true}, {randn(32, 64), grad = true}, {randn(32), grad = true}}, {dtype = dt})
    end
  end)
  it("matmul of transposed views, addmm, bmm, batched matmul", function()
    gpu()
    av.manual_seed(16)
    parity("mm a^T b", function(a, b) return av.matmul(a:t(), b) end, {{randn(5, 7), grad = true}, {randn(5, 3), grad = true}})
    parity("mm a b^T", function(a, b) return av.matmul(a, b:t()) end, {{randn(6, 4), grad = true}, {randn(8, 4), grad = true}})
    parity("addmm", function(c, a, b) return av.addmm(c, a, b, {beta = 0.5, alpha = 2}) end,
      {{randn(3, 4), grad = true}, {randn(3, 6), grad = true}, {randn(6, 4), grad = true}})
    parity("bmm", function(a, b) return av.bmm(a, b) end, {{randn(4, 3, 5), grad = true}, {randn(4, 5, 2), grad = true}})
    parity("matmul broadcast", function(a, b) return av.matmul(a, b) end,
      {{randn(2, 3, 4, 5), grad = true}, {randn(5, 6), grad = true}})
    parity("matmul float64", function(a, b) return av.matmul(a, b) end,
      {{randn(9, 7), grad = true}, {randn(7, 5), grad = true}}, {dtype = "float64"})
  end)
end)

describe("cuda fused optimizers", function()
  local function run(make, device, steps)
    av.manual_seed(17)
    local W, b = randn(30, 20), randn(30)
    local x, y = randn(8, 20), randn(8, 30)
    if device == "cuda" then W, b, x, y = W:cuda(), b:cuda(), x:cuda(), y:cuda() end
    W:requires_grad_(true)
    b:requires_grad_(true)
    local opt = make({W, b})
    for _ = 1, steps do
      opt:zero_grad()
      local loss = ((F.linear(x, W, b) - y) ^ 2):sum()
      loss:backward()
      opt:step()
    end
    return W, b
  end
  local makers = {
    {"SGD momentum nesterov weight decay", function(p)
      return optim.SGD(p, {lr = 0.01, momentum = 0.9, nesterov = true, weight_decay = 1e-3}) end},
    {"SGD dampening maximize", function(p)
      return optim.SGD(p, {lr = 0.01, momentum = 0.5, dampening = 0.3, maximize = true}) end},
    {"Adam", function(p) return optim.Adam(p, {lr = 1e-2, weight_decay = 1e-2}) end},
    {"AdamW amsgrad", function(p) return optim.AdamW(p, {lr = 1e-2, amsgrad = true}) end},
  }
  for _, m in ipairs(makers) do
    it(m[1] .. " matches the CPU over 5 steps", function()
      gpu()
      local Wc, bc = run(m[2], "cpu", 5)
      local Wg, bg = run(m[2], "cuda", 5)
      close(m[1] .. " W", Wg, Wc, 1e-5)
      close(m[1] .. " b", bg, bc, 1e-5)
    end)
  end
end)

describe("cuda autocast and GradScaler", function()
  it("conv2d and linear run in bfloat16 with float32 outputs and float32 weight gradients", function()
    gpu()
    av.manual_seed(18)
    local x, w = randn(4, 8, 10, 10):cuda(), randn(16, 8, 3, 3):cuda():requires_grad_(true)
    local lw = randn(10, 16 * 10 * 10):cuda():requires_grad_(true)
    local y, z = amp.autocast("bf16", function()
      local h = F.conv2d(x, w, nil, {padding = 1})
      return h, F.linear(h:reshape(4, -1), lw)
    end)
    assert.equal(y:dtype(), "float32")
    assert.equal(z:dtype(), "float32")
    assert.equal(amp.enabled_dtype(), nil, "autocast is off again")
    close("autocast conv2d", y, F.conv2d(x:cpu(), w:detach():cpu(), nil, {padding = 1}), 3e-2)
    z:sum():backward()
    assert.equal(w.grad:dtype(), "float32")
    assert.equal(lw.grad:dtype(), "float32")
  end)
  it("fp16 autocast with GradScaler: scaled loss, unscaled gradients, skipped step on inf", function()
    gpu()
    av.manual_seed(19)
    local w = randn(5, 8):cuda():requires_grad_(true)
    local opt = optim.SGD({w}, {lr = 0.1})
    local scaler = amp.GradScaler({init_scale = 1024, growth_interval = 2})
    local x = randn(3, 8):cuda()
    local before = w:detach():clone()
    opt:zero_grad()
    local loss = amp.autocast("fp16", function() return F.linear(x, w):float():pow(2):sum() end)
    scaler:scale(loss):backward()
    scaler:unscale_(opt)
    local ref = (F.linear(x:cpu(), before:cpu()) ^ 2):sum()
    local wc = before:cpu():requires_grad_(true)
    local lc = (F.linear(x:cpu(), wc) ^ 2):sum()
    lc:backward()
    close("unscaled gradient", w.grad, wc.grad, 5e-3)
    assert.truthy(ref:item() > 0)
    assert.truthy(scaler:step(opt))
    scaler:update()
    assert.equal(scaler:get_scale(), 1024)
    -- an inf gradient: the step is skipped and the scale backs off
    opt:zero_grad()
    w.grad = av.zeros(5, 8):fill_(1 / 0):cuda()
    local kept = w:detach():clone()
    assert.falsy(scaler:step(opt))
    scaler:update()
    assert.equal(scaler:get_scale(), 512)
    close("skipped step leaves w", w:detach(), kept, 0)
  end)
end)
