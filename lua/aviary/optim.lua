-- Optimizers with torch.optim (1.13) update rules, written over aviary's
-- in-place tensor ops. Scalars (bias corrections, step sizes) are computed in
-- Lua doubles, exactly where PyTorch computes them in Python floats, so the
-- only differences from PyTorch are float32 rounding inside the tensor ops.
local av = require "aviary"

local optim = {}

-- the option the caller probably meant, for "did you mean" messages
local nearest = require("aviary.util").nearest

-- Fills opts from defaults and rejects names that are not options, so a typo
-- such as `moementum` fails loudly instead of silently training without it.
function optim._check_options(who, opts, defaults, extra)
  opts = opts or {}
  if type(opts) ~= "table" then error(who .. ": options must be a table, got " .. type(opts), 3) end
  local out = {}
  for k, v in pairs(opts) do
    if type(k) ~= "string" then error(who .. ": option names must be strings", 3) end
    if defaults[k] == nil and not (extra and extra[k]) then
      local valid = {}
      for n in pairs(defaults) do valid[n] = true end
      for n in pairs(extra or {}) do valid[n] = true end
      error(("%s: unknown option '%s' (did you mean '%s'?)"):format(who, k, nearest(k, valid)), 3)
    end
    out[k] = v
  end
  for k, v in pairs(defaults) do if out[k] == nil then out[k] = v end end
  return out
end
optim._nearest = nearest

local function is_tensor(x)
  return type(x) == "userdata" and pcall(function() return x:dim() end)
end

local function copy_value(v)
  if type(v) == "table" then
    local t = {}
    for k, x in pairs(v) do t[k] = copy_value(x) end
    return t
  end
  return v
end

local Optimizer = {}
Optimizer.__index = Optimizer

-- Builds param_groups the way torch.optim.Optimizer does: a flat list of
-- tensors is one group; a list of tables is several groups whose own keys
-- override the optimizer's defaults.
local function make_optimizer(cls, who, params, opts, defaults, validate)
  if type(params) ~= "table" or #params == 0 then
    error(who .. ": params must be a non-empty list of tensors or of param groups", 3)
  end
  local o = optim._check_options(who, opts, defaults)
  local self = setmetatable({defaults = o, param_groups = {}, state = {}, _who = who}, cls)
  local groups
  if is_tensor(params[1]) then groups = {{params = params}} else groups = params end
  local seen = {}
  for gi, g in ipairs(groups) do
    if type(g) ~= "table" or type(g.params) ~= "table" then
      error(("%s: param group %d must be a table with a 'params' list"):format(who, gi), 3)
    end
    local group = {}
    for k, v in pairs(g) do
      if k ~= "params" and defaults[k] == nil then
        error(("%s: param group %d has unknown option '%s' (did you mean '%s'?)"):format(
          who, gi, k, nearest(k, defaults)), 3)
      end
      group[k] = v
    end
    for k, v in pairs(o) do if group[k] == nil then group[k] = copy_value(v) end end
    if group.lr == nil then error(who .. ": lr is required", 3) end
    local ps = {}
    for i, p in ipairs(g.params) do
      if not is_tensor(p) then
        error(("%s: parameter %d of group %d is a %s, not a tensor"):format(who, i, gi, type(p)), 3)
      end
      if not p.requires_grad then
        error(("%s: parameter %d of group %d does not require grad"):format(who, i, gi), 3)
      end
      if seen[p] then error(("%s: parameter %d of group %d appears more than once"):format(who, i, gi), 3) end
      seen[p] = true
      ps[i] = p
    end
    if #ps == 0 then error(("%s: param group %d has no parameters"):format(who, gi), 3) end
    group.params = ps
    local ok, err = pcall(validate, group)
    if not ok then error(who .. ": " .. tostring(err):gsub("^.-:%d+: ", ""), 3) end
    self.param_groups[gi] = group
  end
  return self
end

local function check(cond, fmt, ...)
  if not cond then error(fmt:format(...), 0) end
end

function Optimizer:zero_grad()
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do p.grad = nil end
  end
end

-- Parameters are numbered across groups in order, as in torch's state_dict.
function Optimizer:_each_param()
  local list = {}
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do list[#list + 1] = {p, g} end
  end
  return list
end

-- On CUDA a whole parameter group is updated by one fused launch per
-- optimizer state kind (_step_group, below); other devices and layouts take
-- the per-parameter path.
function Optimizer:step()
  av.no_grad(function()
    for _, g in ipairs(self.param_groups) do
      if not (self._step_group and self:_step_group(g)) then
        for _, p in ipairs(g.params) do
          local grad = p.grad
          if grad ~= nil then
            local st = self.state[p]
            if not st then st = {}; self.state[p] = st end
            self:_update(p, grad, st, g)
          end
        end
      end
    end
  end)
end

-- the list kernels (lua/l_amp.c, runtime/ops/cuda/optim.cu), loaded with aviary.amp
local list_core
local function lists()
  if list_core == nil then
    local ok, amp = pcall(require, "aviary.amp")
    list_core = ok and amp._core or false
  end
  return list_core or nil
end

-- a state tensor as the list kernels need it: on p's device, p's dtype, contiguous
-- (state loaded from a CPU checkpoint arrives on the CPU)
local function like_param(t, p)
  if t:device() ~= p:device() then t = t:to(p:device()) end
  if t:dtype() ~= p:dtype() then t = t:to(p:dtype()) end
  if not t:is_contiguous() then t = t:contiguous() end
  return t
end

-- the (param, grad) pairs of a group that has gradients, when every one is a
-- contiguous CUDA tensor of one float dtype; nil otherwise
local function cuda_group(g)
  local ps, gs, dt = {}, {}, nil
  for _, p in ipairs(g.params) do
    local grad = p.grad
    if grad ~= nil then
      if p:device() == "cpu" or grad:device() ~= p:device() then return nil end
      local d = p:dtype()
      if (d ~= "float32" and d ~= "float64") or grad:dtype() ~= d or (dt and d ~= dt) then return nil end
      if not (p:is_contiguous() and grad:is_contiguous()) then return nil end
      dt = d
      ps[#ps + 1], gs[#gs + 1] = p, grad
    end
  end
  if #ps == 0 then return nil end
  return ps, gs
end

function Optimizer:state_dict()
  local state, groups, idx = {}, {}, 0
  for gi, g in ipairs(self.param_groups) do
    local entry = {params = {}}
    for k, v in pairs(g) do if k ~= "params" then entry[k] = copy_value(v) end end
    for _, p in ipairs(g.params) do
      idx = idx + 1
      entry.params[#entry.params + 1] = idx
      local st = self.state[p]
      if st then
        local s = {}
        for k, v in pairs(st) do s[k] = is_tensor(v) and v:clone() or v end
        state[idx] = s
      end
    end
    groups[gi] = entry
  end
  return {state = state, param_groups = groups}
end

function Optimizer:load_state_dict(sd)
  local who = self._who .. ".load_state_dict"
  if type(sd) ~= "table" or type(sd.state) ~= "table" or type(sd.param_groups) ~= "table" then
    error(who .. ": expected a table with 'state' and 'param_groups'", 2)
  end
  if #sd.param_groups ~= #self.param_groups then
    error(("%s: the state has %d param groups but the optimizer has %d"):format(
      who, #sd.param_groups, #self.param_groups), 2)
  end
  for gi, g in ipairs(self.param_groups) do
    local n = type(sd.param_groups[gi].params) == "table" and #sd.param_groups[gi].params or -1
    if n ~= #g.params then
      error(("%s: param group %d has %d parameters in the state but %d in the optimizer"):format(
        who, gi, n, #g.params), 2)
    end
  end
  local list = self:_each_param()
  for idx, st in pairs(sd.state) do
    if type(idx) ~= "number" or not list[idx] then
      error(("%s: state for parameter %s, which the optimizer does not have"):format(who, tostring(idx)), 2)
    end
    local p = list[idx][1]
    for k, v in pairs(st) do
      if is_tensor(v) and table.concat(v:size(), "x") ~= table.concat(p:size(), "x") then
        error(("%s: state '%s' of parameter %d has size %s but the parameter has size %s"):format(
          who, k, idx, table.concat(v:size(), "x"), table.concat(p:size(), "x")), 2)
      end
    end
  end
  self.state = {}
  for idx, st in pairs(sd.state) do
    local p = list[idx][1]
    local s = {}
    for k, v in pairs(st) do s[k] = is_tensor(v) and v:clone():to(p:dtype()) or v end
    self.state[p] = s
  end
  for gi, g in ipairs(self.param_groups) do
    for k, v in pairs(sd.param_groups[gi]) do
      if k ~= "params" then g[k] = copy_value(v) end
    end
  end
end

local function class(name)
  local cls = setmetatable({}, {__index = Optimizer})
  cls.__index = cls
  cls.__name = name
  return cls
end

local function check_common(g)
  check(type(g.lr) == "number" and g.lr >= 0, "Invalid learning rate: %s", tostring(g.lr))
  check(type(g.weight_decay) == "number" and g.weight_decay >= 0,
    "Invalid weight_decay value: %s", tostring(g.weight_decay))
end

local function check_adam(g)
  check_common(g)
  check(type(g.eps) == "number" and g.eps >= 0, "Invalid epsilon value: %s", tostring(g.eps))
  check(type(g.betas) == "table" and #g.betas == 2, "betas must be a table of two numbers")
  for i = 1, 2 do
    local b = g.betas[i]
    check(type(b) == "number" and b >= 0 and b < 1,
      "Invalid beta parameter at index %d: %s (must be in [0, 1))", i, tostring(b))
  end
end

------------------------------------------------------------------------------
-- SGD
local SGD = class("SGD")
optim.SGD_class = SGD

function optim.SGD(params, opts)
  return make_optimizer(SGD, "optim.SGD", params, opts,
    {lr = false, momentum = 0, dampening = 0, nesterov = false, weight_decay = 0, maximize = false},
    function(g)
      if g.lr == false then error("lr is required", 0) end
      check_common(g)
      check(type(g.momentum) == "number" and g.momentum >= 0, "Invalid momentum value: %s", tostring(g.momentum))
      check(not g.nesterov or (g.momentum > 0 and g.dampening == 0),
        "Nesterov momentum requires a momentum and zero dampening")
    end)
end

-- the fused one-pass update (runtime/ops/cpu/optim.c), for contiguous
-- float32/float64 tensors; anything else takes the tensor-op path below
local fused = av._optim
local function fusable(p, grad)
  local dt = p:dtype()
  return fused ~= nil and (dt == "float32" or dt == "float64") and grad:dtype() == dt
    and p:is_contiguous() and grad:is_contiguous() and p:device() == "cpu"
end

function SGD:_step_group(g)
  local C = lists()
  local ps, gs = cuda_group(g)
  if not (C and ps) then return false end
  -- buffers seeded this step take the gradient as is: a separate launch
  local sets = {{ps = {}, gs = {}, bufs = {}, first = false}, {ps = {}, gs = {}, bufs = {}, first = true}}
  for i, p in ipairs(ps) do
    local st = self.state[p]
    if not st then st = {}; self.state[p] = st end
    local set = sets[1]
    if g.momentum ~= 0 then
      if st.momentum_buffer == nil then
        st.momentum_buffer = av.empty_like(p)
        set = sets[2]
      else
        st.momentum_buffer = like_param(st.momentum_buffer, p)
      end
      set.bufs[#set.bufs + 1] = st.momentum_buffer
    end
    set.ps[#set.ps + 1], set.gs[#set.gs + 1] = p, gs[i]
  end
  for _, set in ipairs(sets) do
    if #set.ps > 0 then
      C.sgd_step(set.ps, set.gs, g.momentum ~= 0 and set.bufs or nil, g.lr, g.momentum, g.dampening,
        g.weight_decay, g.nesterov, g.maximize, set.first)
    end
  end
  return true
end

function SGD:_update(p, grad, st, g)
  if fusable(p, grad) then
    local buf, first = st.momentum_buffer, false
    if g.momentum ~= 0 and buf == nil then
      buf, first = av.empty_like(p), true
      st.momentum_buffer = buf
    end
    if buf == nil or (buf:is_contiguous() and buf:dtype() == p:dtype()) then
      fused.sgd_step(p, grad, buf, g.lr, g.momentum, g.dampening, g.weight_decay, g.nesterov, g.maximize, first)
      return
    end
  end
  local d_p = g.maximize and -grad or grad
  if g.weight_decay ~= 0 then d_p = d_p + p * g.weight_decay end
  if g.momentum ~= 0 then
    local buf = st.momentum_buffer
    if buf == nil then
      -- torch seeds the buffer with the first gradient, not with zeros
      buf = d_p:clone()
      st.momentum_buffer = buf
    else
      buf:mul_(g.momentum):add_(d_p * (1 - g.dampening))
    end
    if g.nesterov then d_p = d_p + buf * g.momentum else d_p = buf end
  end
  p:sub_(d_p * g.lr)
end

------------------------------------------------------------------------------
-- Adam and AdamW share everything except where weight decay enters.
local Adam = class("Adam")
local AdamW = class("AdamW")

local function adam_defaults(wd)
  return {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = wd, amsgrad = false, maximize = false}
end

function optim.Adam(params, opts)
  return make_optimizer(Adam, "optim.Adam", params, opts, adam_defaults(0), check_adam)
end

function optim.AdamW(params, opts)
  return make_optimizer(AdamW, "optim.AdamW", params, opts, adam_defaults(1e-2), check_adam)
end

local function adam_update(p, grad, st, g, decoupled)
  if g.maximize then grad = -grad end
  if st.step == nil then
    st.step = 0
    st.exp_avg = av.zeros_like(p)
    st.exp_avg_sq = av.zeros_like(p)
    if g.amsgrad then st.max_exp_avg_sq = av.zeros_like(p) end
  end
  st.step = st.step + 1
  local lr, wd = g.lr, g.weight_decay
  if decoupled then
    p:mul_(1 - lr * wd)
  elseif wd ~= 0 then
    grad = grad + p * wd
  end
  local beta1, beta2 = g.betas[1], g.betas[2]
  st.exp_avg:mul_(beta1):add_(grad * (1 - beta1))
  st.exp_avg_sq:mul_(beta2):add_(grad * grad * (1 - beta2))
  local bc1 = 1 - beta1 ^ st.step
  local bc2_sqrt = math.sqrt(1 - beta2 ^ st.step)
  local second = st.exp_avg_sq
  if g.amsgrad then
    st.max_exp_avg_sq:maximum_(st.exp_avg_sq)
    second = st.max_exp_avg_sq
  end
  local denom = (second:sqrt() / bc2_sqrt):add_(g.eps)
  p:sub_(st.exp_avg / denom * (lr / bc1))
end

function Adam:_update(p, grad, st, g) adam_update(p, grad, st, g, false) end
function AdamW:_update(p, grad, st, g) adam_update(p, grad, st, g, true) end

-- one launch per distinct step count in the group (normally one)
local function adam_group(self, g, decoupled)
  local C = lists()
  local ps, gs = cuda_group(g)
  if not (C and ps) then return false end
  local by_step, order = {}, {}
  for i, p in ipairs(ps) do
    local st = self.state[p]
    if not st then st = {}; self.state[p] = st end
    if st.step == nil then
      st.step = 0
      st.exp_avg = av.zeros_like(p)
      st.exp_avg_sq = av.zeros_like(p)
      if g.amsgrad then st.max_exp_avg_sq = av.zeros_like(p) end
    end
    st.step = st.step + 1
    st.exp_avg, st.exp_avg_sq = like_param(st.exp_avg, p), like_param(st.exp_avg_sq, p)
    if g.amsgrad then st.max_exp_avg_sq = st.max_exp_avg_sq and like_param(st.max_exp_avg_sq, p) or av.zeros_like(p) end
    local b = by_step[st.step]
    if not b then
      b = {ps = {}, gs = {}, m = {}, v = {}, vm = {}}
      by_step[st.step] = b
      order[#order + 1] = st.step
    end
    local k = #b.ps + 1
    b.ps[k], b.gs[k], b.m[k], b.v[k] = p, gs[i], st.exp_avg, st.exp_avg_sq
    if g.amsgrad then b.vm[k] = st.max_exp_avg_sq end
  end
  for _, step in ipairs(order) do
    local b = by_step[step]
    C.adam_step(b.ps, b.gs, b.m, b.v, g.amsgrad and b.vm or nil, g.lr, g.betas[1], g.betas[2], g.eps,
      g.weight_decay, g.amsgrad, g.maximize, decoupled, step)
  end
  return true
end

function Adam:_step_group(g) return adam_group(self, g, false) end
function AdamW:_step_group(g) return adam_group(self, g, true) end

------------------------------------------------------------------------------
-- RMSprop
local RMSprop = class("RMSprop")

function optim.RMSprop(params, opts)
  return make_optimizer(RMSprop, "optim.RMSprop", params, opts,
    {lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0, centered = false, maximize = false},
    function(g)
      check_common(g)
      check(type(g.eps) == "number" and g.eps >= 0, "Invalid epsilon value: %s", tostring(g.eps))
      check(type(g.momentum) == "number" and g.momentum >= 0, "Invalid momentum value: %s", tostring(g.momentum))
      check(type(g.alpha) == "number" and g.alpha >= 0, "Invalid alpha value: %s", tostring(g.alpha))
    end)
end

function RMSprop:_update(p, grad, st, g)
  if g.maximize then grad = -grad end
  if st.step == nil then
    st.step = 0
    st.square_avg = av.zeros_like(p)
    if g.momentum > 0 then st.momentum_buffer = av.zeros_like(p) end
    if g.centered then st.grad_avg = av.zeros_like(p) end
  end
  st.step = st.step + 1
  if g.weight_decay ~= 0 then grad = grad + p * g.weight_decay end
  local alpha = g.alpha
  st.square_avg:mul_(alpha):add_(grad * grad * (1 - alpha))
  local avg
  if g.centered then
    st.grad_avg:mul_(alpha):add_(grad * (1 - alpha))
    avg = (st.square_avg - st.grad_avg * st.grad_avg):sqrt_()
  else
    avg = st.square_avg:sqrt()
  end
  avg:add_(g.eps)
  if g.momentum > 0 then
    st.momentum_buffer:mul_(g.momentum):add_(grad / avg)
    p:sub_(st.momentum_buffer * g.lr)
  else
    p:sub_(grad / avg * g.lr)
  end
end

------------------------------------------------------------------------------
-- torch.nn.utils.clip_grad_norm_: the total norm is the norm of the
-- per-tensor norms; every gradient is scaled by min(1, max/(total + 1e-6)).
function optim.clip_grad_norm(params, max_norm, opts)
  local o = optim._check_options("optim.clip_grad_norm", opts, {norm_type = 2, error_if_nonfinite = false})
  if is_tensor(params) then params = {params} end
  if type(params) ~= "table" then error("optim.clip_grad_norm: params must be a tensor or a list of tensors", 2) end
  if type(max_norm) ~= "number" then error("optim.clip_grad_norm: max_norm must be a number", 2) end
  local nt = o.norm_type
  if nt == "inf" then nt = math.huge end
  if type(nt) ~= "number" or nt <= 0 then error("optim.clip_grad_norm: norm_type must be a positive number or 'inf'", 2) end
  local grads = {}
  for i, p in ipairs(params) do
    if not is_tensor(p) then error(("optim.clip_grad_norm: parameter %d is not a tensor"):format(i), 2) end
    if p.grad ~= nil then grads[#grads + 1] = p.grad end
  end
  if #grads == 0 then return 0.0 end
  local total
  if nt == math.huge then
    total = 0
    for _, gr in ipairs(grads) do total = math.max(total, gr:double():abs():max():item()) end
  else
    local acc = 0
    for _, gr in ipairs(grads) do
      local n = gr:double():abs():pow(nt):sum():item() ^ (1 / nt)
      acc = acc + n ^ nt
    end
    total = acc ^ (1 / nt)
  end
  if o.error_if_nonfinite and (total ~= total or total == math.huge) then
    error("optim.clip_grad_norm: the total norm of the gradients is non-finite", 2)
  end
  local coef = math.min(max_norm / (total + 1e-6), 1.0)
  av.no_grad(function()
    for _, gr in ipairs(grads) do gr:mul_(coef) end
  end)
  return total
end

optim.Optimizer = Optimizer
-- Loaded on first use, so the optimizers work even where only this file
-- was installed.
return setmetatable(optim, {__index = function(t, k)
  if k == "lr_scheduler" then
    local m = require "aviary.optim.lr_scheduler"
    rawset(t, k, m)
    return m
  end
end})
