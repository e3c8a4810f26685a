-- aviary.optim against torch.optim: parameter trajectories of each optimizer
-- on a small least-squares problem, lr (and momentum) sequences of each scheduler, gradient
-- clipping, state_dict round trips and the errors for bad input.
local av = require "aviary"
local optim = require "aviary.optim"
local sched = require "aviary.optim.lr_scheduler"

local REF = av_test.root .. "/tests/parity/optim_ref.py"

local function reference(mode, tensors, meta)
  if not av_test.have_torch() then skip("python3-torch not installed") end
  local fin, fout = av_test.tmpname(".in.safetensors"), av_test.tmpname(".out.safetensors")
  av.save(fin, tensors, meta)
  local ok, out = av_test.python(REF, mode, fin, fout)
  os.remove(fin)
  assert.truthy(ok, out)
  local ref = av.load(fout)
  os.remove(fout)
  return ref
end

local function problem()
  av.manual_seed(1234)
  return {W = av.randn(3, 4), b = av.randn(3), x = av.randn(5, 4), y = av.randn(5, 3)}
end

local function loss_of(W, b, x, y)
  return ((av.matmul(x, W:t()) + b - y) ^ 2):sum()
end

-- Runs `steps` optimizer steps; returns the parameters after each one.
local function trajectory(data, make, steps)
  local W = data.W:clone():requires_grad_(true)
  local b = data.b:clone():requires_grad_(true)
  local opt = make(W, b)
  local out = {}
  for s = 1, steps do
    opt:zero_grad()
    loss_of(W, b, data.x, data.y):backward()
    opt:step()
    out[s] = {W:detach():clone(), b:detach():clone()}
  end
  return out, opt, W, b
end

local optim_cases = {
  {"SGD", {lr = 0.01}, "lr=0.01"},
  {"SGD", {lr = 0.01, momentum = 0.9, nesterov = true, weight_decay = 0.05},
    "lr=0.01;momentum=0.9;nesterov=True;weight_decay=0.05"},
  {"SGD", {lr = 0.005, momentum = 0.8, dampening = 0.3}, "lr=0.005;momentum=0.8;dampening=0.3"},
  {"Adam", {lr = 0.05}, "lr=0.05"},
  {"SGD", {lr = 0.001, momentum = 0.5, maximize = true}, "lr=0.001;momentum=0.5;maximize=True"},
  {"Adam", {lr = 0.01, maximize = true}, "lr=0.01;maximize=True"},
  {"Adam", {lr = 0.05, betas = {0.8, 0.99}, weight_decay = 0.1, amsgrad = true},
    "lr=0.05;betas=(0.8,0.99);weight_decay=0.1;amsgrad=True"},
  {"AdamW", {lr = 0.05}, "lr=0.05"},
  {"AdamW", {lr = 0.03, weight_decay = 0.2, amsgrad = true, eps = 1e-6},
    "lr=0.03;weight_decay=0.2;amsgrad=True;eps=1e-6"},
  {"RMSprop", {lr = 0.01}, "lr=0.01"},
  {"RMSprop", {lr = 0.005, alpha = 0.9, centered = true, momentum = 0.5, weight_decay = 0.01},
    "lr=0.005;alpha=0.9;centered=True;momentum=0.5;weight_decay=0.01"},
  {"SGD", {lr = 0.01, momentum = 0.9}, "lr=0.01;momentum=0.9", {0.01, 0.002}},
  {"Adam", {lr = 0.05}, "lr=0.05", {0.05, 0.01}},
  {"RMSprop", {lr = 0.01, centered = true}, "lr=0.01;centered=True", {0.003, 0.02}},
}

describe("optimizers match torch.optim over 20 steps", function()
  for _, c in ipairs(optim_cases) do
    local name, opts, pykw, glrs = c[1], c[2], c[3], c[4]
    it(("%s %s%s"):format(name, pykw, glrs and (" groups " .. table.concat(glrs, ",")) or ""), function()
      local data = problem()
      local meta = {name = name, kwargs = pykw, steps = "20"}
      if glrs then meta.group_lrs = table.concat(glrs, ",") end
      local ref = reference("optim", data, meta)
      local traj = trajectory(data, function(W, b)
        if glrs then return optim[name]({{params = {W}, lr = glrs[1]}, {params = {b}, lr = glrs[2]}}, opts) end
        return optim[name]({W, b}, opts)
      end, 20)
      for s = 1, 20 do
        assert.tensor_near(traj[s][1], ref["W." .. s], 1e-5, "W after step " .. s)
        assert.tensor_near(traj[s][2], ref["b." .. s], 1e-5, "b after step " .. s)
      end
    end)
  end
end)

local function sequential(opt)
  local a = sched.LinearLR(opt, {start_factor = 0.1, total_iters = 10})
  local c = sched.ExponentialLR(opt, {gamma = 0.95})
  local d = sched.CosineAnnealingLR(opt, {T_max = 15, eta_min = 0.001})
  return sched.SequentialLR(opt, {schedulers = {a, c, d}, milestones = {10, 40}})
end

local function plateau_metrics(n)
  -- improves, stalls, wobbles, improves again: exercises patience and cooldown
  local t = {}
  for i = 1, n do
    local v
    if i <= 15 then v = 1 / i elseif i <= 40 then v = 0.07 + 0.001 * (i % 3)
    elseif i <= 60 then v = 0.07 - 0.002 * (i - 40) else v = 0.03 + 0.0001 * (i % 5) end
    t[i] = v
  end
  return t
end

local sched_cases = {
  {"StepLR", {step_size = 7, gamma = 0.5}, "step_size=7;gamma=0.5"},
  {"MultiStepLR", {milestones = {10, 30, 30, 60}, gamma = 0.3}, "milestones=[10,30,30,60];gamma=0.3"},
  {"ExponentialLR", {gamma = 0.97}, "gamma=0.97"},
  {"CosineAnnealingLR", {T_max = 20, eta_min = 0.001}, "T_max=20;eta_min=0.001"},
  {"CosineAnnealingWarmRestarts", {T_0 = 7, T_mult = 2, eta_min = 0.0005}, "T_0=7;T_mult=2;eta_min=0.0005"},
  {"CosineAnnealingWarmRestarts", {T_0 = 9}, "T_0=9"},
  {"LinearLR", {start_factor = 0.25, end_factor = 0.9, total_iters = 30},
    "start_factor=0.25;end_factor=0.9;total_iters=30"},
  {"LinearLR", {}, ""},
  {"OneCycleLR", {max_lr = 0.5, total_steps = 120}, "max_lr=0.5;total_steps=120"},
  {"OneCycleLR", {max_lr = 0.02, total_steps = 100, anneal_strategy = "linear", pct_start = 0.25},
    "max_lr=0.02;total_steps=100;anneal_strategy='linear';pct_start=0.25", "Adam"},
  {"OneCycleLR", {max_lr = 0.3, total_steps = 110, three_phase = true, div_factor = 10},
    "max_lr=0.3;total_steps=110;three_phase=True;div_factor=10"},
  {"Sequential", nil, ""},
  {"ReduceLROnPlateau", {patience = 3, cooldown = 2, factor = 0.5, min_lr = 1e-3},
    "patience=3;cooldown=2;factor=0.5;min_lr=1e-3"},
  {"ReduceLROnPlateau", {mode = "max", threshold_mode = "abs", threshold = 0.01, patience = 2},
    "mode='max';threshold_mode='abs';threshold=0.01;patience=2"},
  {"CyclicLR", {base_lr = 0.01, max_lr = 0.1, step_size_up = 10}, "base_lr=0.01;max_lr=0.1;step_size_up=10"},
  {"CyclicLR", {base_lr = {0.01, 0.002}, max_lr = {0.1, 0.05}, step_size_up = 7, step_size_down = 13,
    mode = "triangular2", base_momentum = 0.85, max_momentum = {0.95, 0.99}},
    "base_lr=[0.01,0.002];max_lr=[0.1,0.05];step_size_up=7;step_size_down=13;mode='triangular2';"
      .. "base_momentum=0.85;max_momentum=[0.95,0.99]"},
  {"CyclicLR", {base_lr = 0.02, max_lr = 0.2, step_size_up = 8, step_size_down = 5, mode = "exp_range", gamma = 0.98},
    "base_lr=0.02;max_lr=0.2;step_size_up=8;step_size_down=5;mode='exp_range';gamma=0.98"},
  {"CyclicLR", {base_lr = 0.001, max_lr = 0.01, step_size_up = 3, step_size_down = 17, mode = "exp_range",
    gamma = 0.995, base_momentum = {0.7, 0.6}},
    "base_lr=0.001;max_lr=0.01;step_size_up=3;step_size_down=17;mode='exp_range';gamma=0.995;base_momentum=[0.7,0.6]"},
  {"CyclicLR", {base_lr = 0.01, max_lr = 0.1, step_size_up = 6, scale_fn = function(x) return 0.5 ^ x end},
    "base_lr=0.01;max_lr=0.1;step_size_up=6;scale_fn='lambda x: 0.5 ** x'"},
  {"CyclicLR", {base_lr = 0.01, max_lr = 0.1, step_size_up = 5, step_size_down = 9, scale_mode = "iterations",
    scale_fn = function(x) return 1 / (1 + 0.02 * x) end},
    "base_lr=0.01;max_lr=0.1;step_size_up=5;step_size_down=9;scale_mode='iterations';scale_fn='lambda x: 1 / (1 + 0.02 * x)'"},
  {"CyclicLR", {base_lr = 0.005, max_lr = 0.05, step_size_up = 4.5, cycle_momentum = false},
    "base_lr=0.005;max_lr=0.05;step_size_up=4.5;cycle_momentum=False"},
  -- PyTorch 1.13 cannot cycle Adam's beta1; the lrs must still agree
  {"CyclicLR", {base_lr = 0.001, max_lr = 0.006, step_size_up = 12, mode = "triangular2", cycle_momentum = false},
    "base_lr=0.001;max_lr=0.006;step_size_up=12;mode='triangular2';cycle_momentum=False", "Adam"},
}

-- SGD's momentum, or beta1 for Adam-style groups
local function momentum_of(g) if g.momentum ~= nil then return g.momentum end return g.betas[1] end

describe("schedulers match torch.optim.lr_scheduler over 100 steps", function()
  for _, c in ipairs(sched_cases) do
    local name, opts, pykw, optname = c[1], c[2], c[3], c[4] or "SGD"
    it(("%s %s (%s)"):format(name, pykw, optname), function()
      local steps = 100
      local metrics = plateau_metrics(steps)
      local ref = reference("sched", {metrics = av.tensor(metrics):double()},
        {name = name, kwargs = pykw, steps = tostring(steps), group_lrs = "0.1,0.03", optimizer = optname})
      local p1 = av.zeros(2):requires_grad_(true)
      local p2 = av.zeros(2):requires_grad_(true)
      local groups = {{params = {p1}, lr = 0.1}, {params = {p2}, lr = 0.03}}
      local opt
      if optname == "SGD" then opt = optim.SGD(groups, {lr = 0.1, momentum = 0.9})
      else opt = optim[optname](groups, {lr = 0.1}) end
      local s = name == "Sequential" and sequential(opt) or sched[name](opt, opts)
      local lrs = ref.lr
      for i = 0, steps do
        if i > 0 then
          opt:step()
          if name == "ReduceLROnPlateau" then s:step(metrics[i]) else s:step() end
        end
        local got = s:get_last_lr()
        for gi = 1, 2 do
          local want = lrs[i + 1][gi]
          assert.near(got[gi], want, 1e-9 * math.abs(want) + 1e-15, ("lr of group %d after %d steps"):format(gi, i))
          assert.equal(opt.param_groups[gi].lr, got[gi])
          local mom = ref.momentum[i + 1][gi]
          assert.near(momentum_of(opt.param_groups[gi]), mom, 1e-9 * math.abs(mom) + 1e-15,
            ("momentum of group %d after %d steps"):format(gi, i))
        end
      end
    end)
  end
end)

describe("CyclicLR", function()
  local function groups2()
    return {{params = {av.zeros(2):requires_grad_(true)}, lr = 0.1}, {params = {av.zeros(2):requires_grad_(true)}, lr = 0.03}}
  end
  local opts = {base_lr = {0.001, 0.002}, max_lr = 0.01, step_size_up = 4, step_size_down = 7, mode = "exp_range",
    gamma = 0.97, base_momentum = 0.8, max_momentum = {0.95, 0.9}}

  it("cycles Adam's beta1 as SGD's momentum, leaving beta2 alone", function()
    local sgd = optim.SGD(groups2(), {lr = 0.1, momentum = 0.9})
    local adam = optim.Adam(groups2(), {lr = 0.1, betas = {0.5, 0.98}})
    local s1, s2 = sched.CyclicLR(sgd, opts), sched.CyclicLR(adam, opts)
    for step = 0, 40 do
      if step > 0 then s1:step(); s2:step() end
      for gi = 1, 2 do
        assert.equal(adam.param_groups[gi].lr, sgd.param_groups[gi].lr)
        assert.equal(adam.param_groups[gi].betas[1], sgd.param_groups[gi].momentum, "beta1 at step " .. step)
        assert.equal(adam.param_groups[gi].betas[2], 0.98)
      end
    end
    assert.same(s2:get_last_lr(), s1:get_last_lr())
    -- Adam still trains with the cycled betas
    local p = av.ones(3):requires_grad_(true)
    local o = optim.Adam({p}, {lr = 0.1})
    local s = sched.CyclicLR(o, {base_lr = 0.01, max_lr = 0.1, step_size_up = 3})
    for _ = 1, 5 do
      o:zero_grad(); (p * p):sum():backward(); o:step(); s:step()
    end
    assert.truthy(p:abs():max():item() < 1)
  end)

  it("sets the groups' lr to base_lr and momentum to max_momentum on construction", function()
    local opt = optim.SGD(groups2(), {lr = 0.1})
    sched.CyclicLR(opt, {base_lr = {0.004, 0.005}, max_lr = 1, max_momentum = 0.93})
    assert.equal(opt.param_groups[1].lr, 0.004)
    assert.equal(opt.param_groups[2].lr, 0.005)
    assert.equal(opt.param_groups[1].momentum, 0.93)
    local o2 = optim.SGD(groups2(), {lr = 0.1, momentum = 0.5})
    sched.CyclicLR(o2, {base_lr = 0.004, max_lr = 1, cycle_momentum = false})
    assert.equal(o2.param_groups[2].momentum, 0.5)
  end)

  it("state_dict round trip resumes identically (a custom scale_fn is kept, not saved)", function()
    for _, o in ipairs({opts, {base_lr = 0.01, max_lr = 0.1, step_size_up = 3, scale_mode = "iterations",
        scale_fn = function(x) return 0.99 ^ x end}}) do
      local o1 = optim.SGD(groups2(), {lr = 0.1, momentum = 0.9})
      local s1 = sched.CyclicLR(o1, o)
      for _ = 1, 23 do s1:step() end
      local sd, osd = s1:state_dict(), o1:state_dict()
      assert.equal(sd._scale_fn_custom, nil)
      assert.equal(sd.last_epoch, 23)
      local o2 = optim.SGD(groups2(), {lr = 0.1, momentum = 0.9})
      local s2 = sched.CyclicLR(o2, o)
      o2:load_state_dict(osd)
      s2:load_state_dict(sd)
      for _ = 1, 30 do
        s1:step(); s2:step()
        for gi = 1, 2 do
          assert.equal(o2.param_groups[gi].lr, o1.param_groups[gi].lr)
          assert.equal(o2.param_groups[gi].momentum, o1.param_groups[gi].momentum)
        end
      end
    end
  end)

  it("last_epoch resumes the cycle where it was", function()
    local o1 = optim.SGD(groups2(), {lr = 0.1, momentum = 0.9})
    local s1 = sched.CyclicLR(o1, opts)
    for _ = 1, 25 do s1:step() end
    local o2 = optim.SGD(groups2(), {lr = 0.1, momentum = 0.9})
    -- a resumed optimizer carries initial_lr (= base_lr) from the first run, as in PyTorch
    for gi, g in ipairs(o2.param_groups) do g.initial_lr = o1.param_groups[gi].initial_lr end
    assert.equal(o2.param_groups[1].initial_lr, 0.001)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.last_epoch = 24
    local s2 = sched.CyclicLR(o2, o)
    assert.equal(s2.last_epoch, 25)
    for _ = 1, 10 do
      for gi = 1, 2 do
        assert.equal(o2.param_groups[gi].lr, o1.param_groups[gi].lr)
        assert.equal(o2.param_groups[gi].momentum, o1.param_groups[gi].momentum)
      end
      s1:step(); s2:step()
    end
  end)
end)

describe("clip_grad_norm", function()
  for _, case in ipairs({{1.0, 2}, {0.5, 1}, {2.0, "inf"}, {1e6, 2}, {3.0, 3}}) do
    local max_norm, nt = case[1], case[2]
    it(("matches torch (max_norm %g, norm_type %s)"):format(max_norm, tostring(nt)), function()
      av.manual_seed(99)
      local g1, g2 = av.randn(3, 4) * 3, av.randn(5) * 2
      local ref = reference("clip", {g1 = g1, g2 = g2}, {max_norm = tostring(max_norm), norm_type = tostring(nt)})
      local p1 = av.zeros(3, 4):requires_grad_(true)
      local p2 = av.zeros(5):requires_grad_(true)
      local p3 = av.zeros(2):requires_grad_(true) -- no grad: ignored
      p1.grad, p2.grad = g1:clone(), g2:clone()
      local total = optim.clip_grad_norm({p1, p2, p3}, max_norm, {norm_type = nt})
      assert.equal(type(total), "number")
      assert.near(total, ref.total[1], 1e-5 * ref.total[1])
      assert.tensor_near(p1.grad, ref.g1, 1e-5)
      assert.tensor_near(p2.grad, ref.g2, 1e-5)
      assert.equal(p3.grad, nil)
    end)
  end
  it("returns 0 when nothing has a gradient", function()
    assert.equal(optim.clip_grad_norm({av.zeros(2):requires_grad_(true)}, 1.0), 0.0)
  end)
end)

local function max_diff(a, b) return (a:double() - b:double()):abs():max():item() end

describe("optimizer behaviour", function()
  it("zero_grad clears .grad and step skips parameters without a gradient", function()
    local a = av.ones(2):requires_grad_(true)
    local b = av.ones(2):requires_grad_(true)
    local opt = optim.SGD({a, b}, {lr = 0.5, momentum = 0.9})
    local l = (a * 3):sum()
    l:backward()
    opt:step()
    assert.tensor_near(a, av.tensor({-0.5, -0.5}), 1e-7)
    assert.tensor_near(b, av.ones(2), 0)
    opt:zero_grad()
    assert.equal(a.grad, nil)
    assert.equal(b.grad, nil)
    assert.equal(opt:state_dict().state[2], nil)
  end)

  for _, name in ipairs({"SGD", "Adam", "AdamW", "RMSprop"}) do
    it(name .. " state_dict round trip resumes identically", function()
      local data = problem()
      local opts = ({SGD = {lr = 0.01, momentum = 0.9}, Adam = {lr = 0.05, amsgrad = true},
        AdamW = {lr = 0.05}, RMSprop = {lr = 0.01, centered = true, momentum = 0.3}})[name]
      local full = trajectory(data, function(W, b) return optim[name]({W, b}, opts) end, 20)
      local _, opt, W, b = trajectory(data, function(W, b) return optim[name]({W, b}, opts) end, 10)
      local sd = opt:state_dict()
      -- a stale copy must not change when the original keeps training
      opt:zero_grad(); loss_of(W, b, data.x, data.y):backward(); opt:step()
      local W3 = full[10][1]:clone():requires_grad_(true)
      local b3 = full[10][2]:clone():requires_grad_(true)
      local opt2 = optim[name]({W3, b3}, {lr = 123})
      opt2:load_state_dict(sd)
      assert.equal(opt2.param_groups[1].lr, opts.lr)
      for s = 11, 20 do
        opt2:zero_grad()
        loss_of(W3, b3, data.x, data.y):backward()
        opt2:step()
        assert.equal(max_diff(W3, full[s][1]), 0, "W at step " .. s)
        assert.equal(max_diff(b3, full[s][2]), 0, "b at step " .. s)
      end
    end)
  end

  it("schedulers' state_dict round trip resumes identically", function()
    local function build()
      local p = av.zeros(2):requires_grad_(true)
      local opt = optim.SGD({p}, {lr = 0.1, momentum = 0.9})
      return opt, sched.CosineAnnealingWarmRestarts(opt, {T_0 = 5, T_mult = 2}), sequential(opt)
    end
    local o1, w1 = build()
    for _ = 1, 13 do w1:step() end
    local sd, osd = w1:state_dict(), o1:state_dict()
    local o2, w2 = build()
    o2:load_state_dict(osd)
    w2:load_state_dict(sd)
    for _ = 1, 20 do
      w1:step(); w2:step()
      assert.equal(w2:get_last_lr()[1], w1:get_last_lr()[1])
      assert.equal(o2.param_groups[1].lr, o1.param_groups[1].lr)
    end
    local p = av.zeros(2):requires_grad_(true)
    local o3 = optim.SGD({p}, {lr = 0.1})
    local s3 = sequential(o3)
    for _ = 1, 25 do s3:step() end
    local ssd = s3:state_dict()
    local o4 = optim.SGD({av.zeros(2):requires_grad_(true)}, {lr = 0.1})
    local s4 = sequential(o4)
    o4.param_groups[1].lr = o3.param_groups[1].lr
    s4:load_state_dict(ssd)
    for _ = 1, 30 do
      s3:step(); s4:step()
      assert.equal(s4:get_last_lr()[1], s3:get_last_lr()[1])
    end
  end)
end)

describe("bad input", function()
  local function param() return av.zeros(3):requires_grad_(true) end
  it("unknown options name the nearest valid one", function()
    assert.error_matches(function() optim.SGD({param()}, {lr = 0.1, momentun = 0.9}) end, "did you mean 'momentum'")
    assert.error_matches(function() optim.Adam({param()}, {beta = {0.9, 0.99}}) end, "did you mean 'betas'")
    assert.error_matches(function() optim.RMSprop({{params = {param()}, alpah = 0.9}}) end, "did you mean 'alpha'")
    local opt = optim.SGD({param()}, {lr = 0.1})
    assert.error_matches(function() sched.StepLR(opt, {step_size = 3, gama = 0.1}) end, "did you mean 'gamma'")
    assert.error_matches(function() sched.OneCycleLR(opt, {max_lr = 1, total_step = 10}) end,
      "did you mean 'total_steps'")
    assert.error_matches(function() optim.clip_grad_norm({param()}, 1, {norm = 2}) end, "did you mean 'norm_type'")
    assert.error_matches(function() sched.CyclicLR(opt, {base_lr = 0.01, max_lr = 0.1, step_size = 5}) end,
      "CyclicLR: unknown option 'step_size' (did you mean 'step_size_up'?)")
    assert.error_matches(function() sched.CyclicLR(opt, {base_lr = 0.01, max_lr = 0.1, max_momentun = 0.9}) end,
      "did you mean 'max_momentum'")
  end)
  it("rejects invalid hyperparameters", function()
    assert.error_matches(function() optim.SGD({param()}, {lr = -0.1}) end, "Invalid learning rate")
    assert.error_matches(function() optim.SGD({param()}) end, "lr is required")
    assert.error_matches(function() optim.Adam({param()}, {betas = {0.9, 1.0}}) end, "beta parameter at index 2")
    assert.error_matches(function() optim.AdamW({param()}, {betas = {-0.1, 0.9}}) end, "beta parameter at index 1")
    assert.error_matches(function() optim.Adam({param()}, {eps = -1}) end, "Invalid epsilon")
    assert.error_matches(function() optim.RMSprop({param()}, {weight_decay = -1}) end, "Invalid weight_decay")
    assert.error_matches(function() optim.SGD({param()}, {lr = 0.1, nesterov = true}) end, "Nesterov")
    assert.error_matches(function() optim.Adam({{params = {param()}, lr = -1}}) end, "Invalid learning rate")
    local opt = optim.SGD({param()}, {lr = 0.1})
    assert.error_matches(function() sched.LinearLR(opt, {start_factor = 0}) end, "start_factor")
    assert.error_matches(function() sched.StepLR(opt, {}) end, "step_size")
    assert.error_matches(function() sched.ReduceLROnPlateau(opt, {factor = 1.5}) end, "factor")
    assert.error_matches(function() sched.StepLR({}, {step_size = 2}) end, "must be an optimizer")
    assert.error_matches(function() sched.OneCycleLR(opt, {max_lr = 1, total_steps = 10, pct_start = 2}) end,
      "pct_start")
    assert.error_matches(function() sched.SequentialLR(opt, {schedulers = {sched.ExponentialLR(opt, {gamma = 0.9})},
      milestones = {3}}) end, "one more scheduler")
  end)
  it("rejects bad parameter lists", function()
    assert.error_matches(function() optim.SGD({}, {lr = 0.1}) end, "non-empty list")
    assert.error_matches(function() optim.SGD(param(), {lr = 0.1}) end, "non-empty list")
    assert.error_matches(function() optim.SGD({av.zeros(2)}, {lr = 0.1}) end, "does not require grad")
    assert.error_matches(function() optim.SGD({param(), 3}, {lr = 0.1}) end, "not a tensor")
    local p = param()
    assert.error_matches(function() optim.SGD({p, p}, {lr = 0.1}) end, "more than once")
    assert.error_matches(function() optim.SGD({{lr = 0.1}}, {lr = 0.1}) end, "'params' list")
  end)
  it("CyclicLR rejects bad options", function()
    local opt = optim.SGD({param()}, {lr = 0.1})
    local function cyc(o, optimizer) return function() sched.CyclicLR(optimizer or opt, o) end end
    assert.error_matches(cyc({max_lr = 0.1}), "CyclicLR: option 'base_lr' is required")
    assert.error_matches(cyc({base_lr = 0.1}), "CyclicLR: option 'max_lr' is required")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1, mode = "triangle"}),
      "mode must be 'triangular', 'triangular2' or 'exp_range' (or pass scale_fn), got triangle")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1, scale_mode = "epoch"}),
      "scale_mode must be 'cycle' or 'iterations', got epoch")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1, step_size_up = 0}), "step_size_up must be a positive number")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1, step_size_down = -2}),
      "step_size_down must be a non-negative number")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = {0.1, 0.2}}), "expected 1 values for max_lr, got 2")
    assert.error_matches(cyc({base_lr = "0.01", max_lr = 0.1}), "base_lr must be a number or a list of 1 numbers")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1, base_momentum = {0.8, 0.7}}),
      "expected 1 values for base_momentum, got 2")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1, scale_fn = 3}), "scale_fn must be a function")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1, gamma = "x"}), "gamma must be a number")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1, last_epoch = 5}),
      "param 'initial_lr' is not specified in param_groups[1] when resuming")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1, last_epoch = -3}), "last_epoch must be an integer >= -1")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1}, {param_groups = {{lr = 0.1}}, defaults = {lr = 0.1}}),
      "optimizer must support momentum")
    assert.error_matches(cyc({base_lr = 0.01, max_lr = 0.1}, {}), "must be an optimizer")
    -- without cycling momentum, an optimizer with neither momentum nor betas is fine
    local bare = {param_groups = {{lr = 0.1}}, defaults = {lr = 0.1}}
    sched.CyclicLR(bare, {base_lr = 0.01, max_lr = 0.1, cycle_momentum = false})
    assert.equal(bare.param_groups[1].lr, 0.01)
    -- mode is ignored when scale_fn is given
    sched.CyclicLR(opt, {base_lr = 0.01, max_lr = 0.1, mode = "whatever", scale_fn = function() return 1 end})
  end)
  it("OneCycleLR refuses to step past total_steps", function()
    local opt = optim.SGD({param()}, {lr = 0.1, momentum = 0.9})
    local s = sched.OneCycleLR(opt, {max_lr = 1, total_steps = 3})
    for _ = 1, 3 do s:step() end
    assert.error_matches(function() s:step() end, "total steps is 3")
  end)
  it("optim.lr_scheduler is the scheduler module", function()
    assert.equal(optim.lr_scheduler, sched)
  end)
  it("load_state_dict into a different parameter set is an error naming the problem", function()
    local a, b = param(), param()
    local opt = optim.Adam({a, b}, {lr = 0.1})
    a.grad, b.grad = av.ones(3), av.ones(3)
    opt:step()
    local sd = opt:state_dict()
    assert.error_matches(function() optim.Adam({param()}):load_state_dict(sd) end, "1 in the optimizer")
    assert.error_matches(function() optim.Adam({param(), av.zeros(4):requires_grad_(true)}):load_state_dict(sd) end,
      "has size 3 but the parameter has size 4")
    assert.error_matches(function() optim.Adam({{params = {param()}}, {params = {param()}}}):load_state_dict(sd) end,
      "the state has 1 param groups but the optimizer has 2")
    assert.error_matches(function() optim.Adam({param()}):load_state_dict({}) end, "'state' and 'param_groups'")
  end)
end)

describe("fused SGD update", function()
  it("gives the tensor-op path's result on contiguous parameters, and the fallback handles views", function()
    av.manual_seed(21)
    local base, grads = av.randn(6, 5), {av.randn(6, 5), av.randn(6, 5), av.randn(6, 5)}
    local a = base:clone():requires_grad_(true)
    local b = base:t():contiguous():t():requires_grad_(true) -- the same values, non-contiguous: no fused path
    assert.equal(false, b:is_contiguous())
    local oa = optim.SGD({a}, {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.01})
    local ob = optim.SGD({b}, {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.01})
    for i = 1, 3 do
      a.grad = grads[i]:clone(); b.grad = grads[i]:clone()
      oa:step(); ob:step()
    end
    assert.truthy((a - b):abs():max():item() < 1e-6)
    assert.truthy((oa.state[a].momentum_buffer - ob.state[b].momentum_buffer):abs():max():item() < 1e-6)
  end)
end)
