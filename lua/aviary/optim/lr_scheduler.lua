-- Learning-rate schedulers following torch.optim.lr_scheduler (1.13). Most
-- schedulers use PyTorch's chainable form: each step derives the new lr from
-- the group's current lr, so rounding accumulates exactly as it does there.
-- step(epoch) uses the closed forms PyTorch falls back to in that case.
local S = {}

local function checker()
  -- required lazily: aviary.optim loads this file while it is being loaded
  return require("aviary.optim")._check_options
end

local function bisect_right(list, x)
  local lo, hi = 1, #list + 1
  while lo < hi do
    local mid = (lo + hi) // 2
    if x < list[mid] then hi = mid else lo = mid + 1 end
  end
  return lo - 1 -- number of elements <= x
end

local function check_optimizer(who, opt)
  if type(opt) ~= "table" or type(opt.param_groups) ~= "table" then
    error(who .. ": the first argument must be an optimizer", 3)
  end
end

local Base = {}
Base.__index = Base

local function class(name)
  local cls = setmetatable({}, {__index = Base})
  cls.__index = cls
  cls.__name = name
  return cls
end

-- Mirrors _LRScheduler.__init__: remember each group's initial lr and take
-- the first step, which leaves last_epoch at 0. Resuming (last_epoch given,
-- not -1) needs every group's initial_lr, as in PyTorch.
local function init(self, opt, last_epoch)
  last_epoch = last_epoch or -1
  self.optimizer = opt
  self.base_lrs = {}
  for i, g in ipairs(opt.param_groups) do
    if last_epoch == -1 then
      if g.initial_lr == nil then g.initial_lr = g.lr end
    elseif g.initial_lr == nil then
      error(("%s: param 'initial_lr' is not specified in param_groups[%d] when resuming an optimizer"):format(
        self.__name, i), 3)
    end
    self.base_lrs[i] = g.initial_lr
  end
  self.last_epoch = last_epoch
  self:step()
  return self
end

function Base:_set_lrs(lrs)
  self._last_lr = {}
  for i, g in ipairs(self.optimizer.param_groups) do
    g.lr = lrs[i]
    self._last_lr[i] = lrs[i]
  end
end

function Base:step(epoch)
  if epoch == nil then
    self.last_epoch = self.last_epoch + 1
    self:_set_lrs(self:get_lr())
  else
    self.last_epoch = epoch
    if self._closed_form then self:_set_lrs(self:_closed_form()) else self:_set_lrs(self:get_lr()) end
  end
end

function Base:get_last_lr()
  local out = {}
  for i, v in ipairs(self._last_lr) do out[i] = v end
  return out
end

local function current_lrs(self, f)
  local out = {}
  for i, g in ipairs(self.optimizer.param_groups) do out[i] = f(g.lr, self.base_lrs[i], i) end
  return out
end

-- Plain numbers and lists are saved; the optimizer is not part of the state.
local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

function Base:state_dict()
  local sd = {}
  for k, v in pairs(self) do
    if k ~= "optimizer" and type(v) ~= "function" and not (type(v) == "table" and getmetatable(v)) then
      sd[k] = copy(v)
    end
  end
  return sd
end

function Base:load_state_dict(sd)
  if type(sd) ~= "table" then error(self.__name .. ".load_state_dict: expected a table", 2) end
  for k, v in pairs(sd) do
    if k ~= "optimizer" then self[k] = copy(v) end
  end
end

local function positive_int(who, name, v)
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    error(("%s: %s must be an integer, got %s"):format(who, name, tostring(v)), 3)
  end
  if v <= 0 then error(("%s: %s must be positive, got %s"):format(who, name, tostring(v)), 3) end
  return math.tointeger(v)
end

local function required(who, o, name)
  if o[name] == nil or o[name] == false then error(("%s: option '%s' is required"):format(who, name), 3) end
end

------------------------------------------------------------------------------
local StepLR = class("StepLR")
function S.StepLR(opt, opts)
  check_optimizer("StepLR", opt)
  local o = checker()("StepLR", opts, {step_size = false, gamma = 0.1})
  required("StepLR", o, "step_size")
  local self = setmetatable({step_size = positive_int("StepLR", "step_size", o.step_size), gamma = o.gamma}, StepLR)
  return init(self, opt)
end
function StepLR:get_lr()
  local e = self.last_epoch
  return current_lrs(self, function(lr)
    if e == 0 or e % self.step_size ~= 0 then return lr end
    return lr * self.gamma
  end)
end
function StepLR:_closed_form()
  return current_lrs(self, function(_, base) return base * self.gamma ^ (self.last_epoch // self.step_size) end)
end

------------------------------------------------------------------------------
local MultiStepLR = class("MultiStepLR")
function S.MultiStepLR(opt, opts)
  check_optimizer("MultiStepLR", opt)
  local o = checker()("MultiStepLR", opts, {milestones = false, gamma = 0.1})
  required("MultiStepLR", o, "milestones")
  if type(o.milestones) ~= "table" then error("MultiStepLR: milestones must be a list of integers", 2) end
  local ms = {}
  for i, m in ipairs(o.milestones) do ms[i] = m end
  table.sort(ms)
  local self = setmetatable({milestones = ms, gamma = o.gamma}, MultiStepLR)
  return init(self, opt)
end
function MultiStepLR:get_lr()
  -- a milestone listed twice decays twice, as PyTorch's Counter does
  local count = 0
  for _, m in ipairs(self.milestones) do if m == self.last_epoch then count = count + 1 end end
  return current_lrs(self, function(lr)
    if count == 0 then return lr end
    return lr * self.gamma ^ count
  end)
end
function MultiStepLR:_closed_form()
  local n = bisect_right(self.milestones, self.last_epoch)
  return current_lrs(self, function(_, base) return base * self.gamma ^ n end)
end

------------------------------------------------------------------------------
local ExponentialLR = class("ExponentialLR")
function S.ExponentialLR(opt, opts)
  check_optimizer("ExponentialLR", opt)
  local o = checker()("ExponentialLR", opts, {gamma = false})
  required("ExponentialLR", o, "gamma")
  return init(setmetatable({gamma = o.gamma}, ExponentialLR), opt)
end
function ExponentialLR:get_lr()
  return current_lrs(self, function(lr)
    if self.last_epoch == 0 then return lr end
    return lr * self.gamma
  end)
end
function ExponentialLR:_closed_form()
  return current_lrs(self, function(_, base) return base * self.gamma ^ self.last_epoch end)
end

------------------------------------------------------------------------------
local CosineAnnealingLR = class("CosineAnnealingLR")
function S.CosineAnnealingLR(opt, opts)
  check_optimizer("CosineAnnealingLR", opt)
  local o = checker()("CosineAnnealingLR", opts, {T_max = false, eta_min = 0})
  required("CosineAnnealingLR", o, "T_max")
  local self = setmetatable({T_max = positive_int("CosineAnnealingLR", "T_max", o.T_max), eta_min = o.eta_min},
    CosineAnnealingLR)
  return init(self, opt)
end
function CosineAnnealingLR:get_lr()
  local e, T, eta = self.last_epoch, self.T_max, self.eta_min
  return current_lrs(self, function(lr, base)
    if e == 0 then return lr end
    if (e - 1 - T) % (2 * T) == 0 then
      return lr + (base - eta) * (1 - math.cos(math.pi / T)) / 2
    end
    return (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (lr - eta) + eta
  end)
end
function CosineAnnealingLR:_closed_form()
  local e, T, eta = self.last_epoch, self.T_max, self.eta_min
  return current_lrs(self, function(_, base)
    return eta + (base - eta) * (1 + math.cos(math.pi * e / T)) / 2
  end)
end

------------------------------------------------------------------------------
local WarmRestarts = class("CosineAnnealingWarmRestarts")
function S.CosineAnnealingWarmRestarts(opt, opts)
  check_optimizer("CosineAnnealingWarmRestarts", opt)
  local who = "CosineAnnealingWarmRestarts"
  local o = checker()(who, opts, {T_0 = false, T_mult = 1, eta_min = 0})
  required(who, o, "T_0")
  local T_0 = positive_int(who, "T_0", o.T_0)
  local T_mult = positive_int(who, "T_mult", o.T_mult)
  local self = setmetatable({T_0 = T_0, T_i = T_0, T_mult = T_mult, eta_min = o.eta_min, T_cur = -1}, WarmRestarts)
  return init(self, opt)
end
function WarmRestarts:get_lr()
  return current_lrs(self, function(_, base)
    return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
  end)
end
function WarmRestarts:step(epoch)
  if epoch == nil and self.last_epoch < 0 then epoch = 0 end
  if epoch == nil then
    epoch = self.last_epoch + 1
    self.T_cur = self.T_cur + 1
    if self.T_cur >= self.T_i then
      self.T_cur = self.T_cur - self.T_i
      self.T_i = self.T_i * self.T_mult
    end
  else
    if epoch < 0 then error("CosineAnnealingWarmRestarts: epoch must be non-negative, got " .. epoch, 2) end
    if epoch >= self.T_0 then
      if self.T_mult == 1 then
        self.T_cur = epoch % self.T_0
      else
        local n = math.floor(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
        self.T_cur = epoch - self.T_0 * (self.T_mult ^ n - 1) / (self.T_mult - 1)
        self.T_i = self.T_0 * self.T_mult ^ n
      end
    else
      self.T_i = self.T_0
      self.T_cur = epoch
    end
  end
  self.last_epoch = math.floor(epoch)
  self:_set_lrs(self:get_lr())
end

------------------------------------------------------------------------------
local LinearLR = class("LinearLR")
function S.LinearLR(opt, opts)
  check_optimizer("LinearLR", opt)
  local o = checker()("LinearLR", opts, {start_factor = 1 / 3, end_factor = 1.0, total_iters = 5})
  if not (type(o.start_factor) == "number" and o.start_factor > 0 and o.start_factor <= 1) then
    error("LinearLR: start_factor must be in (0, 1], got " .. tostring(o.start_factor), 2)
  end
  if not (type(o.end_factor) == "number" and o.end_factor >= 0 and o.end_factor <= 1) then
    error("LinearLR: end_factor must be in [0, 1], got " .. tostring(o.end_factor), 2)
  end
  local self = setmetatable({start_factor = o.start_factor, end_factor = o.end_factor,
    total_iters = positive_int("LinearLR", "total_iters", o.total_iters)}, LinearLR)
  return init(self, opt)
end
function LinearLR:get_lr()
  local e, s, f, n = self.last_epoch, self.start_factor, self.end_factor, self.total_iters
  return current_lrs(self, function(lr)
    if e == 0 then return lr * s end
    if e > n then return lr end
    return lr * (1 + (f - s) / (n * s + (e - 1) * (f - s)))
  end)
end
function LinearLR:_closed_form()
  local e, s, f, n = self.last_epoch, self.start_factor, self.end_factor, self.total_iters
  return current_lrs(self, function(_, base) return base * (s + (f - s) * math.min(n, e) / n) end)
end

------------------------------------------------------------------------------
local OneCycleLR = class("OneCycleLR")

local function per_group(who, name, v, n)
  if type(v) == "table" then
    if #v ~= n then error(("%s: expected %d values for %s, got %d"):format(who, n, name, #v), 3) end
    return v
  end
  local t = {}
  for i = 1, n do t[i] = v end
  return t
end

function S.OneCycleLR(opt, opts)
  local who = "OneCycleLR"
  check_optimizer(who, opt)
  local o = checker()(who, opts, {max_lr = false, total_steps = false, epochs = false, steps_per_epoch = false,
    pct_start = 0.3, anneal_strategy = "cos", cycle_momentum = true, base_momentum = 0.85,
    max_momentum = 0.95, div_factor = 25.0, final_div_factor = 1e4, three_phase = false})
  required(who, o, "max_lr")
  local total
  if o.total_steps then
    total = positive_int(who, "total_steps", o.total_steps)
  elseif o.epochs and o.steps_per_epoch then
    total = positive_int(who, "epochs", o.epochs) * positive_int(who, "steps_per_epoch", o.steps_per_epoch)
  else
    error(who .. ": you must define either total_steps or both epochs and steps_per_epoch", 2)
  end
  if type(o.pct_start) ~= "number" or o.pct_start < 0 or o.pct_start > 1 then
    error(who .. ": pct_start must be a number in [0, 1], got " .. tostring(o.pct_start), 2)
  end
  if o.anneal_strategy ~= "cos" and o.anneal_strategy ~= "linear" then
    error(who .. ": anneal_strategy must be 'cos' or 'linear', got " .. tostring(o.anneal_strategy), 2)
  end
  local p = o.pct_start * total
  local phases
  if o.three_phase then
    phases = {
      {end_step = p - 1, lr = {"initial_lr", "max_lr"}, mom = {"max_momentum", "base_momentum"}},
      {end_step = 2 * p - 2, lr = {"max_lr", "initial_lr"}, mom = {"base_momentum", "max_momentum"}},
      {end_step = total - 1, lr = {"initial_lr", "min_lr"}, mom = {"max_momentum", "max_momentum"}},
    }
  else
    phases = {
      {end_step = p - 1, lr = {"initial_lr", "max_lr"}, mom = {"max_momentum", "base_momentum"}},
      {end_step = total - 1, lr = {"max_lr", "min_lr"}, mom = {"base_momentum", "max_momentum"}},
    }
  end
  local groups = opt.param_groups
  local max_lrs = per_group(who, "max_lr", o.max_lr, #groups)
  for i, g in ipairs(groups) do
    g.initial_lr = max_lrs[i] / o.div_factor
    g.max_lr = max_lrs[i]
    g.min_lr = g.initial_lr / o.final_div_factor
  end
  local use_beta1 = false
  if o.cycle_momentum then
    local d = opt.defaults or {}
    if d.momentum == nil and d.betas == nil then
      error(who .. ": the optimizer has no momentum or betas; pass cycle_momentum = false", 2)
    end
    use_beta1 = d.betas ~= nil
    local maxm = per_group(who, "max_momentum", o.max_momentum, #groups)
    local basem = per_group(who, "base_momentum", o.base_momentum, #groups)
    for i, g in ipairs(groups) do
      if use_beta1 then g.betas = {maxm[i], g.betas[2]} else g.momentum = maxm[i] end
      g.max_momentum, g.base_momentum = maxm[i], basem[i]
    end
  end
  local self = setmetatable({total_steps = total, phases = phases, anneal_strategy = o.anneal_strategy,
    cycle_momentum = o.cycle_momentum, use_beta1 = use_beta1}, OneCycleLR)
  return init(self, opt)
end

local function anneal(strategy, a, b, pct)
  if strategy == "cos" then return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1) end
  return (b - a) * pct + a
end

function OneCycleLR:get_lr()
  local n = self.last_epoch
  if n > self.total_steps then
    error(("OneCycleLR: tried to step %d times; the specified number of total steps is %d"):format(
      n, self.total_steps), 0)
  end
  local lrs = {}
  for i, g in ipairs(self.optimizer.param_groups) do
    local start = 0
    for k, ph in ipairs(self.phases) do
      if n <= ph.end_step or k == #self.phases then
        local pct = (n - start) / (ph.end_step - start)
        lrs[i] = anneal(self.anneal_strategy, g[ph.lr[1]], g[ph.lr[2]], pct)
        if self.cycle_momentum then
          local m = anneal(self.anneal_strategy, g[ph.mom[1]], g[ph.mom[2]], pct)
          if self.use_beta1 then g.betas = {m, g.betas[2]} else g.momentum = m end
        end
        break
      end
      start = ph.end_step
    end
  end
  return lrs
end

function OneCycleLR:step(epoch)
  self.last_epoch = epoch or self.last_epoch + 1
  local ok, lrs = pcall(self.get_lr, self)
  if not ok then error(lrs, 2) end
  self:_set_lrs(lrs)
end

------------------------------------------------------------------------------
-- CyclicLR follows PyTorch 1.13 for optimizers with a `momentum` option (SGD,
-- RMSprop). For Adam-style optimizers (a `betas` option) it cycles betas[1],
-- as PyTorch 2.x does; 1.13 refused them. When resuming (last_epoch ~= -1)
-- base_momentum comes from the option, as in 2.x, not from the group's
-- current momentum as 1.13 took it (which made the cycle drift).
local CyclicLR = class("CyclicLR")

-- a number for every group, from one number or a list of one per group (copied)
local function numbers(who, name, v, n)
  if type(v) == "table" and #v ~= n then error(("%s: expected %d values for %s, got %d"):format(who, n, name, #v), 3) end
  local out = {}
  for i = 1, n do
    local x = v
    if type(v) == "table" then x = v[i] end
    if type(x) ~= "number" then
      error(("%s: %s must be a number or a list of %d numbers, got %s"):format(who, name, n,
        type(v) == "table" and ("a list holding a " .. type(x)) or type(v)), 3)
    end
    out[i] = x
  end
  return out
end

function S.CyclicLR(opt, opts)
  local who = "CyclicLR"
  check_optimizer(who, opt)
  local o = checker()(who, opts, {base_lr = false, max_lr = false, step_size_up = 2000, step_size_down = false,
    mode = "triangular", gamma = 1.0, scale_fn = false, scale_mode = "cycle", cycle_momentum = true,
    base_momentum = 0.8, max_momentum = 0.9, last_epoch = -1})
  required(who, o, "base_lr")
  required(who, o, "max_lr")
  local groups = opt.param_groups
  local n = #groups
  local base_lrs = numbers(who, "base_lr", o.base_lr, n)
  local max_lrs = numbers(who, "max_lr", o.max_lr, n)
  if math.type(o.last_epoch) ~= "integer" or o.last_epoch < -1 then
    error(who .. ": last_epoch must be an integer >= -1, got " .. tostring(o.last_epoch), 2)
  end
  if type(o.step_size_up) ~= "number" or not (o.step_size_up > 0) then
    error(who .. ": step_size_up must be a positive number, got " .. tostring(o.step_size_up), 2)
  end
  local up = o.step_size_up + 0.0
  local down = up
  if o.step_size_down then
    if type(o.step_size_down) ~= "number" or not (o.step_size_down >= 0) then
      error(who .. ": step_size_down must be a non-negative number, got " .. tostring(o.step_size_down), 2)
    end
    down = o.step_size_down + 0.0
  end
  if type(o.gamma) ~= "number" then error(who .. ": gamma must be a number, got " .. tostring(o.gamma), 2) end
  if o.scale_fn and type(o.scale_fn) ~= "function" then
    error(who .. ": scale_fn must be a function of one number, got " .. type(o.scale_fn), 2)
  end
  if not o.scale_fn and o.mode ~= "triangular" and o.mode ~= "triangular2" and o.mode ~= "exp_range" then
    error(who .. ": mode must be 'triangular', 'triangular2' or 'exp_range' (or pass scale_fn), got "
      .. tostring(o.mode), 2)
  end
  if o.scale_mode ~= "cycle" and o.scale_mode ~= "iterations" then
    error(who .. ": scale_mode must be 'cycle' or 'iterations', got " .. tostring(o.scale_mode), 2)
  end
  local total = up + down
  local self = setmetatable({max_lrs = max_lrs, total_size = total, step_ratio = up / total, mode = o.mode,
    gamma = o.gamma, cycle_momentum = o.cycle_momentum and true or false}, CyclicLR)
  if o.scale_fn then
    self._scale_fn_custom = o.scale_fn -- a function: state_dict leaves it out
    self.scale_mode = o.scale_mode
  else
    self.scale_mode = o.mode == "exp_range" and "iterations" or "cycle"
  end
  if o.last_epoch == -1 then
    for i, g in ipairs(groups) do g.lr = base_lrs[i] end
  end
  if self.cycle_momentum then
    local d = opt.defaults or {}
    if d.momentum == nil and d.betas == nil then
      error(who .. ": the optimizer must support momentum (a 'momentum' or 'betas' option) with cycle_momentum "
        .. "enabled; pass cycle_momentum = false", 2)
    end
    self.use_beta1 = d.momentum == nil
    self.base_momentums = numbers(who, "base_momentum", o.base_momentum, n)
    self.max_momentums = numbers(who, "max_momentum", o.max_momentum, n)
    if o.last_epoch == -1 then
      for i, g in ipairs(groups) do self:_set_momentum(g, self.max_momentums[i]) end
    end
  end
  init(self, opt, o.last_epoch)
  self.base_lrs = base_lrs
  return self
end

function CyclicLR:_set_momentum(g, m)
  if self.use_beta1 then g.betas = {m, g.betas[2]} else g.momentum = m end
end

function CyclicLR:scale_fn(x)
  if self._scale_fn_custom then return self._scale_fn_custom(x) end
  if self.mode == "triangular" then return 1.0 end
  if self.mode == "triangular2" then return 1 / (2.0 ^ (x - 1)) end
  return self.gamma ^ x
end

-- Sets the groups' momentum as a side effect, as PyTorch's get_lr does.
function CyclicLR:get_lr()
  local e = self.last_epoch
  local cycle = math.floor(1 + e / self.total_size)
  local x = 1.0 + e / self.total_size - cycle
  local scale_factor
  if x <= self.step_ratio then scale_factor = x / self.step_ratio
  else scale_factor = (x - 1) / (self.step_ratio - 1) end
  local arg = self.scale_mode == "cycle" and cycle or e
  local lrs = {}
  for i, base in ipairs(self.base_lrs) do
    local height = (self.max_lrs[i] - base) * scale_factor
    lrs[i] = base + height * self:scale_fn(arg)
  end
  if self.cycle_momentum then
    local groups = self.optimizer.param_groups
    for i, base in ipairs(self.base_momentums) do
      local height = (self.max_momentums[i] - base) * scale_factor
      self:_set_momentum(groups[i], self.max_momentums[i] - height * self:scale_fn(arg))
    end
  end
  return lrs
end

------------------------------------------------------------------------------
local SequentialLR = class("SequentialLR")
function S.SequentialLR(opt, opts)
  local who = "SequentialLR"
  check_optimizer(who, opt)
  local o = checker()(who, opts, {schedulers = false, milestones = false})
  required(who, o, "schedulers")
  required(who, o, "milestones")
  local scheds, ms = o.schedulers, o.milestones
  for i, s in ipairs(scheds) do
    if type(s) ~= "table" or s.optimizer ~= opt then
      error(("%s: scheduler %d does not belong to this optimizer"):format(who, i), 2)
    end
  end
  if #scheds == 0 or #ms ~= #scheds - 1 then
    error(("%s: expected one more scheduler than milestones, got %d schedulers and %d milestones"):format(
      who, #scheds, #ms), 2)
  end
  local self = setmetatable({_schedulers = scheds, _milestones = ms, last_epoch = 0, optimizer = opt}, SequentialLR)
  -- each child already stepped once when it was built; undo that and let
  -- only the first one take its initial step
  for _, g in ipairs(opt.param_groups) do g.lr = g.initial_lr end
  for _, s in ipairs(scheds) do s.last_epoch = s.last_epoch - 1 end
  scheds[1]:step()
  self._last_lr = scheds[1]:get_last_lr()
  return self
end
function SequentialLR:step()
  self.last_epoch = self.last_epoch + 1
  local idx = bisect_right(self._milestones, self.last_epoch) + 1
  local s = self._schedulers[idx]
  if idx > 1 and self._milestones[idx - 1] == self.last_epoch then s:step(0) else s:step() end
  self._last_lr = s:get_last_lr()
end
function SequentialLR:state_dict()
  local sd = {last_epoch = self.last_epoch, _milestones = copy(self._milestones), _last_lr = copy(self._last_lr),
    _schedulers = {}}
  for i, s in ipairs(self._schedulers) do sd._schedulers[i] = s:state_dict() end
  return sd
end
function SequentialLR:load_state_dict(sd)
  if type(sd) ~= "table" or type(sd._schedulers) ~= "table" or #sd._schedulers ~= #self._schedulers then
    error("SequentialLR.load_state_dict: the state does not match this scheduler's children", 2)
  end
  self.last_epoch, self._milestones, self._last_lr = sd.last_epoch, copy(sd._milestones), copy(sd._last_lr)
  for i, s in ipairs(self._schedulers) do s:load_state_dict(sd._schedulers[i]) end
end

------------------------------------------------------------------------------
local Plateau = class("ReduceLROnPlateau")
function S.ReduceLROnPlateau(opt, opts)
  local who = "ReduceLROnPlateau"
  check_optimizer(who, opt)
  local o = checker()(who, opts, {mode = "min", factor = 0.1, patience = 10, threshold = 1e-4,
    threshold_mode = "rel", cooldown = 0, min_lr = 0, eps = 1e-8})
  if type(o.factor) ~= "number" or o.factor >= 1 then error(who .. ": factor should be < 1.0", 2) end
  if o.mode ~= "min" and o.mode ~= "max" then error(who .. ": mode must be 'min' or 'max', got " .. tostring(o.mode), 2) end
  if o.threshold_mode ~= "rel" and o.threshold_mode ~= "abs" then
    error(who .. ": threshold_mode must be 'rel' or 'abs', got " .. tostring(o.threshold_mode), 2)
  end
  local self = setmetatable({optimizer = opt, factor = o.factor, patience = o.patience, threshold = o.threshold,
    threshold_mode = o.threshold_mode, cooldown = o.cooldown, mode = o.mode, eps = o.eps, last_epoch = 0,
    min_lrs = per_group(who, "min_lr", o.min_lr, #opt.param_groups)}, Plateau)
  self.best = o.mode == "min" and math.huge or -math.huge
  self.cooldown_counter, self.num_bad_epochs = 0, 0
  self._last_lr = {}
  for i, g in ipairs(opt.param_groups) do self._last_lr[i] = g.lr end
  return self
end
function Plateau:_is_better(a)
  local b, t = self.best, self.threshold
  if self.mode == "min" then
    if self.threshold_mode == "rel" then return a < b * (1 - t) end
    return a < b - t
  end
  if self.threshold_mode == "rel" then return a > b * (t + 1) end
  return a > b + t
end
function Plateau:step(metric)
  if type(metric) ~= "number" then
    if type(metric) == "userdata" then metric = metric:item() end
    if type(metric) ~= "number" then error("ReduceLROnPlateau.step: expected a number metric", 2) end
  end
  self.last_epoch = self.last_epoch + 1
  if self:_is_better(metric) then
    self.best, self.num_bad_epochs = metric, 0
  else
    self.num_bad_epochs = self.num_bad_epochs + 1
  end
  if self.cooldown_counter > 0 then
    self.cooldown_counter = self.cooldown_counter - 1
    self.num_bad_epochs = 0
  end
  if self.num_bad_epochs > self.patience then
    for i, g in ipairs(self.optimizer.param_groups) do
      local new = math.max(g.lr * self.factor, self.min_lrs[i])
      -- tiny reductions are skipped so lr stops moving at its floor
      if g.lr - new > self.eps then g.lr = new end
    end
    self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
  end
  self._last_lr = {}
  for i, g in ipairs(self.optimizer.param_groups) do self._last_lr[i] = g.lr end
end

return S
