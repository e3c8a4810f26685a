--- Mixed precision, as torch.autocast and torch.cuda.amp.GradScaler.
--
-- amp.autocast(dtype, fn) runs fn with conv2d and linear on CUDA float32
-- tensors computed in bfloat16 or float16 on tensor cores: their inputs,
-- weights and biases are cast (recorded casts, so the float32 master weights
-- get float32 gradients) and their outputs cast back to float32, so every
-- other op sees float32 (pass {keep_low = true} to keep the low dtype as
-- PyTorch does, which needs CUDA kernels for it downstream). Losses on half
-- inputs compute in float32. amp.GradScaler scales the loss so float16
-- gradients do not underflow, unscales them before the step, skips steps
-- whose gradients hold an inf or NaN and adapts the scale, with PyTorch's
-- defaults.
--
-- On a machine without CUDA, autocast is a no-op with a one-time warning
-- (the CPU kernels compute in float32/float64), and a GradScaler is disabled
-- with a warning, as PyTorch's is: a config written for a GPU still runs.
local av = require "aviary"

local amp = {}

-- the C functions (lua/l_amp.c): another entry point of the library that holds aviary.core
local function load_core()
  local path = package.searchpath("aviary.core", package.cpath)
  if not path then return nil end
  local open = package.loadlib(path, "luaopen_aviary_amp_core")
  if not open then return nil end
  return open()
end
local C = load_core()
amp._core = C

local DTYPES = {bf16 = "bfloat16", bfloat16 = "bfloat16", fp16 = "float16", float16 = "float16", half = "float16"}

--- the canonical dtype name for 'bf16' / 'bfloat16' / 'fp16' / 'float16' / 'half'
function amp.dtype_name(d)
  local name = type(d) == "string" and DTYPES[d]
  if not name then
    error(("amp: unknown autocast dtype %s (expected 'bf16' or 'fp16')"):format(tostring(d)), 3)
  end
  return name
end

local function cuda_available()
  return av.cuda ~= nil and av.cuda.is_available()
end

local warned = {}
local function warn_once(key, msg)
  if warned[key] then return end
  warned[key] = true
  io.stderr:write("aviary.amp: ", msg, "\n")
end
amp._reset_warnings = function() warned = {} end

local function need_core()
  if not C then error("amp: this build's aviary.core has no mixed-precision functions (lua/l_amp.c)", 3) end
  return C
end

--- Turns autocast on (dtype 'bf16' or 'fp16') until amp.disable(); returns
-- whether it took effect (false on a machine without CUDA).
function amp.enable(dtype, opts)
  local name = amp.dtype_name(dtype)
  if not cuda_available() then
    warn_once("autocast", "autocast has no effect without a CUDA device; running in float32")
    return false
  end
  need_core().set_autocast(name, opts and opts.keep_low or false)
  return true
end

function amp.disable()
  if C then C.set_autocast(nil, false) end
end

--- the autocast dtype in effect ('bfloat16' / 'float16'), or nil
function amp.enabled_dtype()
  if not C then return nil end
  return (C.get_autocast())
end

--- Runs fn(...) under autocast and restores the previous state (also on error);
-- returns fn's results. fn may be a module: amp.autocast('bf16', model, x).
function amp.autocast(dtype, fn, ...)
  local name = amp.dtype_name(dtype)
  local mt = getmetatable(fn)
  if type(fn) ~= "function" and not (type(mt) == "table" and mt.__call) then
    error("amp.autocast: expected a function (or a module) to run", 2)
  end
  if not cuda_available() then
    warn_once("autocast", "autocast has no effect without a CUDA device; running in float32")
    return fn(...)
  end
  local core = need_core()
  local prev, prev_keep = core.get_autocast()
  core.set_autocast(name, false)
  local res = table.pack(pcall(fn, ...))
  core.set_autocast(prev, prev_keep)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

--- TF32 tensor-core math for float32 convolutions and matrix products on CUDA
-- (off by default; PyTorch's torch.backends.cuda.matmul.allow_tf32 and
-- torch.backends.cudnn.allow_tf32 together)
function amp.set_allow_tf32(on)
  if C then C.set_allow_tf32(on and true or false) end
end
function amp.allow_tf32() return C ~= nil and C.get_allow_tf32() end

------------------------------------------------------------------------------
-- GradScaler
local GradScaler = {}
GradScaler.__index = GradScaler
amp.GradScaler_class = GradScaler

local SCALER_DEFAULTS = {init_scale = 2.0 ^ 16, growth_factor = 2.0, backoff_factor = 0.5, growth_interval = 2000,
                         enabled = true}

function amp.GradScaler(opts)
  local o = require("aviary.optim")._check_options("amp.GradScaler", opts, SCALER_DEFAULTS)
  if not (o.growth_factor > 1) then error("amp.GradScaler: growth_factor must be above 1", 2) end
  if not (o.backoff_factor > 0 and o.backoff_factor < 1) then
    error("amp.GradScaler: backoff_factor must be between 0 and 1", 2)
  end
  if math.type(o.growth_interval) ~= "integer" or o.growth_interval < 1 then
    error("amp.GradScaler: growth_interval must be a positive integer", 2)
  end
  local enabled = o.enabled
  if enabled and not cuda_available() then
    warn_once("scaler", "GradScaler is enabled, but CUDA is not available; disabling")
    enabled = false
  end
  return setmetatable({_enabled = enabled, _scale = o.init_scale, _growth = o.growth_factor,
                       _backoff = o.backoff_factor, _interval = o.growth_interval, _tracker = 0,
                       _per_opt = {}}, GradScaler)
end

function GradScaler:is_enabled() return self._enabled end
function GradScaler:get_scale() return self._enabled and self._scale or 1.0 end

--- loss * scale (the loss itself when disabled)
function GradScaler:scale(loss)
  if not self._enabled then return loss end
  return loss * self._scale
end

local function state_of(self, optimizer)
  local st = self._per_opt[optimizer]
  if not st then
    st = {unscaled = false, found_inf = false}
    self._per_opt[optimizer] = st
  end
  return st
end

--- Divides the gradients of optimizer's parameters by the scale in place and
-- records whether any is inf or NaN. At most once per optimizer between updates.
function GradScaler:unscale_(optimizer)
  if not self._enabled then return end
  local st = state_of(self, optimizer)
  if st.unscaled then
    error("GradScaler:unscale_: already called on this optimizer since the last update()", 2)
  end
  local grads = {}
  for _, g in ipairs(optimizer.param_groups) do
    for _, p in ipairs(g.params) do
      if p.grad ~= nil then grads[#grads + 1] = p.grad end
    end
  end
  st.found_inf = need_core().unscale(grads, 1.0 / self._scale)
  st.unscaled = true
end

--- optimizer:step() unless the unscaled gradients hold an inf or NaN; returns
-- whether the step ran
function GradScaler:step(optimizer, ...)
  if not self._enabled then
    optimizer:step(...)
    return true
  end
  local st = state_of(self, optimizer)
  if not st.unscaled then self:unscale_(optimizer) end
  st.stepped = true
  if st.found_inf then return false end
  optimizer:step(...)
  return true
end

--- Adapts the scale after a step: backoff when a step was skipped, growth
-- after growth_interval clean steps in a row (or sets new_scale).
function GradScaler:update(new_scale)
  if not self._enabled then return end
  if new_scale ~= nil then
    if type(new_scale) ~= "number" or new_scale <= 0 then
      error("GradScaler:update: new_scale must be a positive number", 2)
    end
    self._scale = new_scale
  else
    local found, any = false, false
    for _, st in pairs(self._per_opt) do
      if st.unscaled then any = true end
      if st.found_inf then found = true end
    end
    if not any then error("GradScaler:update: no gradients were unscaled since the last update", 2) end
    if found then
      self._scale = self._scale * self._backoff
      self._tracker = 0
    else
      self._tracker = self._tracker + 1
      if self._tracker == self._interval then
        self._scale = self._scale * self._growth
        self._tracker = 0
      end
    end
  end
  self._per_opt = {}
end

function GradScaler:state_dict()
  if not self._enabled then return {} end
  return {scale = self._scale, growth_factor = self._growth, backoff_factor = self._backoff,
          growth_interval = self._interval, _growth_tracker = self._tracker}
end

function GradScaler:load_state_dict(sd)
  if type(sd) ~= "table" then error("GradScaler:load_state_dict: expected a table", 2) end
  if not self._enabled then return end
  if sd.scale == nil then error("GradScaler:load_state_dict: the state has no scale (saved while disabled?)", 2) end
  self._scale = sd.scale
  self._growth = sd.growth_factor or self._growth
  self._backoff = sd.backoff_factor or self._backoff
  self._interval = sd.growth_interval or self._interval
  self._tracker = sd._growth_tracker or 0
end

return amp
