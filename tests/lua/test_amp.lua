-- aviary.amp on every machine: autocast's CPU behaviour (a no-op with a
-- warning), the GradScaler's bookkeeping (scale, unscale, skipped steps,
-- backoff and growth) over the C unscale kernel, the fused list updates
-- against the per-parameter optimizers, and TRAIN.amp in configs.
-- The CUDA side is in tests/gpu/test_cuda_nn.lua.
local av = require "aviary"
local amp = require "aviary.amp"
local optim = require "aviary.optim"
local F = require "aviary.nn.functional"
local config = require "aviary.config"

local has_gpu = av.cuda and av.cuda.is_available()

describe("amp.autocast", function()
  it("names bf16 / fp16 and rejects other dtypes", function()
    assert.equal(amp.dtype_name("bf16"), "bfloat16")
    assert.equal(amp.dtype_name("fp16"), "float16")
    assert.equal(amp.dtype_name("half"), "float16")
    assert.error_matches(function() amp.autocast("fp32", function() end) end, "unknown autocast dtype fp32")
    assert.error_matches(function() amp.autocast("bf16") end, "expected a function")
  end)
  it("leaves CPU tensors in float32 and returns fn's results", function()
    av.manual_seed(1)
    local x, w = av.randn(2, 3, 6, 6), av.randn(4, 3, 3, 3)
    local y, extra = amp.autocast("bf16", function(a) return F.conv2d(a, w), 42 end, x)
    assert.equal(y:dtype(), "float32")
    assert.equal(extra, 42)
    assert.tensor_near(y, F.conv2d(x, w), 0)
  end)
  it("restores the previous state when fn fails", function()
    assert.error_matches(function() amp.autocast("bf16", function() error("boom", 0) end) end, "boom")
    assert.equal(amp.enabled_dtype(), nil)
  end)
  it("the C switch casts only CUDA tensors", function()
    if not amp._core then skip("no amp core in this build") end
    amp._core.set_autocast("bfloat16", false)
    local ok, y = pcall(F.linear, av.randn(3, 4), av.randn(5, 4))
    amp._core.set_autocast(nil, false)
    assert.truthy(ok, y)
    assert.equal(y:dtype(), "float32")
    assert.error_matches(function() amp._core.set_autocast("float32", false) end, "float16 or bfloat16")
  end)
  it("is a no-op on a machine without CUDA, and says so", function()
    if has_gpu then skip("this machine has a CUDA device") end
    assert.falsy(amp.enable("fp16"))
    assert.equal(amp.enabled_dtype(), nil)
  end)
end)

-- a GradScaler whose bookkeeping runs on CPU gradients (the scaler is
-- disabled on machines without CUDA; the arithmetic is the same)
local function cpu_scaler(opts)
  local s = amp.GradScaler(opts)
  s._enabled = true
  return s
end

describe("amp.GradScaler", function()
  it("is disabled without CUDA, passing the loss and the step through", function()
    if has_gpu then skip("this machine has a CUDA device") end
    local s = amp.GradScaler()
    assert.falsy(s:is_enabled())
    assert.equal(s:get_scale(), 1.0)
    local w = av.ones(3):requires_grad_(true)
    local opt = optim.SGD({w}, {lr = 0.5})
    local loss = (w * 2):sum()
    assert.equal(s:scale(loss), loss)
    loss:backward()
    assert.truthy(s:step(opt))
    s:update()
    assert.tensor_near(w:detach(), {0, 0, 0}, 1e-7)
  end)
  it("checks its options", function()
    assert.error_matches(function() amp.GradScaler({init_scal = 2}) end, "did you mean 'init_scale'")
    assert.error_matches(function() amp.GradScaler({growth_factor = 0.5}) end, "growth_factor")
    assert.error_matches(function() amp.GradScaler({growth_interval = 0}) end, "growth_interval")
  end)
  it("scales, unscales, steps, grows after growth_interval clean steps", function()
    if not amp._core then skip("no amp core in this build") end
    local s = cpu_scaler({init_scale = 8, growth_interval = 2})
    local w = av.tensor({1.0, 2.0}):requires_grad_(true)
    local opt = optim.SGD({w}, {lr = 0.1})
    for step = 1, 2 do
      opt:zero_grad()
      local loss = s:scale((w * w):sum())
      loss:backward()
      s:unscale_(opt)
      assert.tensor_near(w.grad, w:detach() * 2, 1e-6)
      assert.truthy(s:step(opt))
      s:update()
      assert.equal(s:get_scale(), step == 2 and 16 or 8)
    end
  end)
  it("skips the step and backs off on an inf or NaN gradient", function()
    if not amp._core then skip("no amp core in this build") end
    local s = cpu_scaler({init_scale = 64})
    local w = av.tensor({1.0, 2.0}):requires_grad_(true)
    local opt = optim.SGD({w}, {lr = 0.1})
    w.grad = av.tensor({1.0, 0 / 0})
    assert.falsy(s:step(opt))
    s:update()
    assert.equal(s:get_scale(), 32)
    assert.tensor_near(w:detach(), {1, 2}, 0)
    assert.error_matches(function() s:update() end, "no gradients were unscaled")
  end)
  it("refuses a second unscale_ before update, and round-trips its state", function()
    if not amp._core then skip("no amp core in this build") end
    local s = cpu_scaler({init_scale = 4})
    local w = av.tensor({1.0}):requires_grad_(true)
    w.grad = av.tensor({2.0})
    local opt = optim.SGD({w}, {lr = 0.1})
    s:unscale_(opt)
    assert.tensor_near(w.grad, {0.5}, 0)
    assert.error_matches(function() s:unscale_(opt) end, "already called")
    s:update()
    local sd = s:state_dict()
    local t = cpu_scaler()
    t:load_state_dict(sd)
    assert.equal(t:get_scale(), 4)
    assert.equal(t._tracker, 1)
  end)
end)

describe("fused list kernels on the CPU", function()
  it("unscale multiplies in place and reports non-finite values", function()
    if not amp._core then skip("no amp core in this build") end
    local a, b = av.tensor({2.0, 4.0}), av.tensor({1.0, 1 / 0}, {dtype = "float64"})
    assert.falsy(amp._core.unscale({a}, 0.5))
    assert.tensor_near(a, {1, 2}, 0)
    assert.truthy(amp._core.unscale({a, b}, 1))
  end)
  it("adam_step over a list matches optim.Adam / AdamW step by step", function()
    if not amp._core then skip("no amp core in this build") end
    for _, case in ipairs{{optim.Adam, false, {lr = 1e-2, weight_decay = 1e-2}},
                          {optim.AdamW, true, {lr = 1e-2, amsgrad = true}}} do
      av.manual_seed(3)
      local p1, p2 = av.randn(4, 3), av.randn(5)
      local q1, q2 = p1:clone(), p2:clone()
      p1:requires_grad_(true); p2:requires_grad_(true)
      local opt = case[1]({p1, p2}, case[3])
      local st = {m = {av.zeros(4, 3), av.zeros(5)}, v = {av.zeros(4, 3), av.zeros(5)}, vm = {av.zeros(4, 3), av.zeros(5)}}
      for step = 1, 3 do
        local g1, g2 = av.randn(4, 3), av.randn(5)
        p1.grad, p2.grad = g1:clone(), g2:clone()
        opt:step()
        local o = opt.param_groups[1]
        amp._core.adam_step({q1, q2}, {g1, g2}, st.m, st.v, o.amsgrad and st.vm or nil, o.lr, o.betas[1], o.betas[2],
          o.eps, o.weight_decay, o.amsgrad, o.maximize, case[2], step)
        assert.tensor_near(q1, p1:detach(), 1e-6)
        assert.tensor_near(q2, p2:detach(), 1e-6)
      end
    end
  end)
  it("sgd_step over a list matches optim.SGD", function()
    if not amp._core then skip("no amp core in this build") end
    av.manual_seed(4)
    local p = av.randn(6)
    local q = p:clone()
    p:requires_grad_(true)
    local opt = optim.SGD({p}, {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 1e-2})
    local buf = av.empty(6)
    for step = 1, 3 do
      local g = av.randn(6)
      p.grad = g:clone()
      opt:step()
      amp._core.sgd_step({q}, {g}, {buf}, 0.1, 0.9, 0, 1e-2, true, false, step == 1)
      assert.tensor_near(q, p:detach(), 1e-6)
    end
  end)
  it("rejects lists of different lengths", function()
    if not amp._core then skip("no amp core in this build") end
    assert.error_matches(function() amp._core.unscale({1}, 1) end, "is not a tensor")
    assert.error_matches(function()
      amp._core.sgd_step({av.zeros(2)}, {}, nil, 0.1, 0, 0, 0, false, false, false)
    end, "expected 1")
  end)
end)

describe("TRAIN.amp in configs", function()
  it("takes false, 'bf16' or 'fp16'", function()
    local cfg = config.defaults()
    assert.equal(cfg.TRAIN.amp, false)
    config.apply_override(cfg, "TRAIN.amp=bf16")
    assert.equal(cfg.TRAIN.amp, "bf16")
    config.validate(cfg)
    config.apply_override(cfg, "TRAIN.amp=false")
    assert.equal(cfg.TRAIN.amp, false)
    config.validate(cfg)
  end)
  it("names the valid values otherwise", function()
    local cfg = config.defaults()
    assert.error_matches(function() config.apply_override(cfg, "TRAIN.amp=bf61") end, "did you mean 'bf16'")
    cfg.TRAIN.amp = true
    assert.error_matches(function() config.validate(cfg) end, "TRAIN.amp must be false or one of 'bf16', 'fp16'")
    cfg.TRAIN.amp = "fp8"
    assert.error_matches(function() config.validate(cfg) end, "TRAIN.amp must be one of bf16, fp16")
  end)
  it("survives serialize and load", function()
    local cfg = config.defaults()
    cfg.TRAIN.amp = "fp16"
    local src = config.serialize(cfg)
    assert.truthy(src:find('amp = "fp16"', 1, true) or src:find("amp = 'fp16'", 1, true), src:match("amp[^\n]*"))
  end)
end)
