--- aviary.nn: modules, containers, layers and criteria, as torch.nn.
--   local nn = require "aviary.nn"
--   local net = nn.Sequential(nn.Conv2d(3, 16, 3, {padding = 1}), nn.ReLU(), nn.Flatten())
--   local y = net(x)
-- A module keeps its parameters, buffers and child modules in registration
-- order, so state_dict() names are PyTorch's (`layer1.0.conv1.weight`) and
-- weights move between aviary and PyTorch unchanged. Containers index their
-- children from 1 in Lua (`seq[1]`), while their names stay PyTorch's
-- ("0", "1", ...), as in `m:get('classifier.6')`.
--
-- A new module in Lua:
--   local Block = nn.Module:extend("Block")
--   function Block:__init(c) self.conv = nn.Conv2d(c, c, 3, {padding = 1}) end
--   function Block:forward(x) return av.relu(self.conv(x)) + x end
local av = require "aviary"
local F = require "aviary.nn.functional"

local nn = {functional = F}

local is_tensor = av.is_tensor
local unpack = table.unpack

------------------------------------------------------------------------------
-- small helpers

-- an ordered dictionary: keys in insertion order, values in map
local function od() return {keys = {}, map = {}} end
local function od_set(d, k, v)
  if d.map[k] == nil then d.keys[#d.keys + 1] = k end
  d.map[k] = v
end
local function od_del(d, k)
  if d.map[k] == nil then return false end
  d.map[k] = nil
  for i, x in ipairs(d.keys) do
    if x == k then table.remove(d.keys, i); break end
  end
  return true
end

local nearest = require("aviary.util").nearest
nn._nearest = nearest

-- Checks an options table against the names a layer accepts; fills defaults.
local function options(who, opts, defaults, level)
  opts = opts or {}
  if type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(who, type(opts)), (level or 2) + 1)
  end
  local valid = {}
  for k in pairs(defaults) do valid[#valid + 1] = k end
  table.sort(valid)
  local out = {}
  for k, v in pairs(opts) do
    if type(k) ~= "string" or defaults[k] == nil then
      error(("%s: unknown option '%s' (did you mean '%s'?)"):format(who, tostring(k), nearest(tostring(k), valid)),
        (level or 2) + 1)
    end
    out[k] = v
  end
  for k, v in pairs(defaults) do
    if out[k] == nil and v ~= nn.NONE then out[k] = v end
  end
  return out
end
-- marks an option whose default is "absent" (nil) in a defaults table
nn.NONE = setmetatable({}, {__tostring = function() return "nn.NONE" end})

-- Python's repr of a number, for module printing
local function pyrepr(v)
  if type(v) == "boolean" then return v and "True" or "False" end
  if v == nil then return "None" end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = pyrepr(x) end
    if #parts == 1 then return "(" .. parts[1] .. ",)" end
    return "(" .. table.concat(parts, ", ") .. ")"
  end
  if type(v) == "string" then return "'" .. v .. "'" end
  if math.type(v) == "integer" then return tostring(v) end
  if v == math.floor(v) and math.abs(v) < 1e16 then return ("%.1f"):format(v) end
  for p = 1, 17 do
    local s = ("%." .. p .. "g"):format(v)
    if tonumber(s) == v then return s end
  end
  return ("%.17g"):format(v)
end
nn._pyrepr = pyrepr

local function pair(who, name, v)
  if type(v) == "number" then
    if math.type(v) ~= "integer" and v ~= math.floor(v) then
      error(("%s: %s must be an integer or a pair {h, w}, got %s"):format(who, name, v), 4)
    end
    v = math.tointeger(v)
    return {v, v}
  end
  if type(v) == "table" and #v == 2 then return {v[1], v[2]} end
  if type(v) == "string" then return v end
  error(("%s: %s must be an integer or a pair {h, w}, got %s"):format(who, name, type(v)), 4)
end

------------------------------------------------------------------------------
-- Parameters: a tensor marked as a parameter is registered when assigned to a
-- module field; any tensor assigned to a name that is already a parameter
-- replaces it.
local param_marks = setmetatable({}, {__mode = "k"})

--- nn.Parameter(t [, requires_grad=true]) -> t as a leaf that requires grad,
-- marked so that `module.name = p` registers it as a parameter.
function nn.Parameter(t, requires_grad)
  if not is_tensor(t) then error("nn.Parameter: expected a tensor, got " .. type(t), 2) end
  if not t.is_leaf then t = t:detach() end
  if requires_grad == nil then requires_grad = true end
  t:requires_grad_(requires_grad)
  param_marks[t] = true
  return t
end
function nn.is_parameter(t) return param_marks[t] == true end

------------------------------------------------------------------------------
-- Module

local Module = {}
nn.Module = Module

local function is_module(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__is_module") == true
end
nn.is_module = is_module

local function class_of(m) return getmetatable(m) end
local function type_name(m) return rawget(class_of(m), "__name") or "Module" end

-- the field lookup of a module instance: class methods first (as Python's
-- attribute lookup), then parameters, buffers and children; integer keys
-- index a container's children from 1
local function make_index(cls)
  return function(self, k)
    local v = cls[k]
    if v ~= nil then return v end
    local p = rawget(self, "_parameters")
    if p == nil then return nil end
    if type(k) == "number" then
      local mods = rawget(self, "_modules")
      local name = mods.keys[k]
      return name ~= nil and mods.map[name] or nil
    end
    v = p.map[k]
    if v ~= nil then return v end
    v = rawget(self, "_buffers").map[k]
    if v ~= nil then return v end
    return rawget(self, "_modules").map[k]
  end
end

local function module_newindex(self, k, v)
  local params, bufs, mods = rawget(self, "_parameters"), rawget(self, "_buffers"), rawget(self, "_modules")
  if params == nil then rawset(self, k, v); return end
  if type(k) == "number" then
    local name = mods.keys[k]
    if name == nil then
      error(("%s: no child at index %d (it has %d)"):format(type_name(self), k, #mods.keys), 2)
    end
    if not is_module(v) then
      error(("%s: child %d must be a module, got %s"):format(type_name(self), k, type(v)), 2)
    end
    mods.map[name] = v
    return
  end
  if is_module(v) then
    od_del(params, k); od_del(bufs, k)
    od_set(mods, k, v)
  elseif v == nil then
    od_del(params, k); od_del(bufs, k); od_del(mods, k)
  elseif is_tensor(v) and (param_marks[v] or params.map[k] ~= nil) then
    od_del(bufs, k); od_del(mods, k)
    param_marks[v] = true
    od_set(params, k, v)
  elseif is_tensor(v) and bufs.map[k] ~= nil then
    od_set(bufs, k, v)
  elseif mods.map[k] ~= nil then
    error(("%s: cannot assign a %s to child module '%s' (expected a module or nil)"):format(type_name(self), type(v), k), 2)
  elseif params.map[k] ~= nil then
    error(("%s: cannot assign a %s to parameter '%s' (expected a tensor or nil)"):format(type_name(self), type(v), k), 2)
  else
    rawset(self, k, v)
  end
end

local function construct(cls, ...)
  local self = {_parameters = od(), _buffers = od(), _modules = od(), _non_persistent = {}, training = true}
  setmetatable(self, cls)
  local init = cls.__init
  if init then init(self, ...) end
  return self
end

--- Module:extend(name) -> a new module class deriving from this one; define
-- `__init(self, ...)` and `forward(self, ...)`; call it to make an instance.
function Module:extend(name)
  if type(name) ~= "string" then error("Module:extend: expected a class name (string)", 2) end
  local parent = self
  local cls = {}
  cls.__name = name
  cls.__is_module = true
  cls.__index = make_index(cls)
  cls.__newindex = module_newindex
  cls.__call = Module.__call
  cls.__tostring = Module.__tostring
  cls.__len = Module.__len
  cls.__close = nil
  cls._parent = parent
  setmetatable(cls, {__index = parent, __call = construct,
                     __tostring = function() return "aviary.nn class " .. name end})
  return cls
end

--- nn.class(name [, parent=nn.Module]) -> a new module class (same as parent:extend(name))
function nn.class(name, parent)
  parent = parent or Module
  return Module.extend(parent, name)
end

function Module:__init() end

function Module:forward()
  error(("%s has no forward method: define function %s:forward(...)"):format(type_name(self), type_name(self)), 2)
end

function Module:__len() return #rawget(self, "_modules").keys end

-- m(...) runs forward, with hooks when any are registered
function Module.__call(self, ...)
  if rawget(self, "_hooks") == nil then return self:forward(...) end
  return Module._call_with_hooks(self, ...)
end

function Module:type_name() return type_name(self) end

------------------------------------------------------------------------------
-- registration

--- m:register_parameter(name, t) -- adds t (or nil) as a parameter named name
function Module:register_parameter(name, t)
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    error("register_parameter: name must be a non-empty string without dots", 2)
  end
  if t == nil then od_del(self._parameters, name); return end
  if not is_tensor(t) then error(("register_parameter: '%s' must be a tensor or nil, got %s"):format(name, type(t)), 2) end
  param_marks[t] = true
  od_del(self._buffers, name); od_del(self._modules, name)
  od_set(self._parameters, name, t)
end

--- m:register_buffer(name, t, {persistent=true}) -- a tensor saved with the
-- state but not trained (running statistics)
function Module:register_buffer(name, t, opts)
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    error("register_buffer: name must be a non-empty string without dots", 2)
  end
  if t ~= nil and not is_tensor(t) then
    error(("register_buffer: '%s' must be a tensor or nil, got %s"):format(name, type(t)), 2)
  end
  od_del(self._parameters, name); od_del(self._modules, name)
  if t == nil then od_del(self._buffers, name) else od_set(self._buffers, name, t) end
  local persistent = not (opts and opts.persistent == false)
  self._non_persistent[name] = (not persistent) or nil
end

--- m:add_module(name, child) -- registers child under name
function Module:add_module(name, child)
  if type(name) ~= "string" or name:find(".", 1, true) then
    error("add_module: name must be a string without dots", 2)
  end
  if child ~= nil and not is_module(child) then
    error(("add_module: '%s' must be a module, got %s"):format(name, type(child)), 2)
  end
  od_del(self._parameters, name); od_del(self._buffers, name)
  if child == nil then od_del(self._modules, name) else od_set(self._modules, name, child) end
  return self
end

------------------------------------------------------------------------------
-- traversal

-- calls fn(prefix, module) for every module in pre-order, each once
local function walk(m, prefix, fn, seen)
  if seen[m] then return end
  seen[m] = true
  fn(prefix, m)
  local mods = m._modules
  for _, k in ipairs(mods.keys) do
    local c = mods.map[k]
    if c ~= nil then walk(c, prefix == "" and k or (prefix .. "." .. k), fn, seen) end
  end
end

local function list_iter(list)
  local i = 0
  return function()
    i = i + 1
    local e = list[i]
    if e then return e[1], e[2] end
  end
end

--- m:named_modules() -> iterator of (name, module), this module first as ''
function Module:named_modules()
  local out = {}
  walk(self, "", function(p, m) out[#out + 1] = {p, m} end, {})
  return list_iter(out)
end

--- m:modules() -> list of this module and all below it, pre-order
function Module:modules()
  local out = {}
  walk(self, "", function(_, m) out[#out + 1] = m end, {})
  return out
end

--- m:named_children() -> iterator of (name, child)
function Module:named_children()
  local out = {}
  for _, k in ipairs(self._modules.keys) do out[#out + 1] = {k, self._modules.map[k]} end
  return list_iter(out)
end

--- m:children() -> list of the direct children
function Module:children()
  local out = {}
  for _, k in ipairs(self._modules.keys) do out[#out + 1] = self._modules.map[k] end
  return out
end

local function named_tensors(self, field, recurse)
  local out, seen = {}, {}
  local function add(prefix, m)
    local d = m[field]
    for _, k in ipairs(d.keys) do
      local t = d.map[k]
      if t ~= nil and not seen[t] then
        seen[t] = true
        out[#out + 1] = {prefix == "" and k or (prefix .. "." .. k), t}
      end
    end
  end
  if recurse == false then add("", self) else walk(self, "", add, {}) end
  return out
end

--- m:named_parameters([recurse=true]) -> iterator of (name, parameter), PyTorch's names
function Module:named_parameters(recurse) return list_iter(named_tensors(self, "_parameters", recurse)) end

--- m:parameters([recurse=true]) -> list of parameters (for an optimizer)
function Module:parameters(recurse)
  local out = {}
  for i, e in ipairs(named_tensors(self, "_parameters", recurse)) do out[i] = e[2] end
  return out
end

--- m:named_buffers([recurse=true]) -> iterator of (name, buffer)
function Module:named_buffers(recurse) return list_iter(named_tensors(self, "_buffers", recurse)) end

--- m:buffers([recurse=true]) -> list of buffers
function Module:buffers(recurse)
  local out = {}
  for i, e in ipairs(named_tensors(self, "_buffers", recurse)) do out[i] = e[2] end
  return out
end

--- m:num_parameters({trainable=false}) -> number of parameter elements
function Module:num_parameters(opts)
  local n = 0
  for _, p in ipairs(self:parameters()) do
    if not (opts and opts.trainable) or p.requires_grad then n = n + p:numel() end
  end
  return n
end

--- m:get(name) -> the module, parameter or buffer at a dotted path ('layer4.1.conv2')
function Module:get(name)
  if type(name) ~= "string" then error("get: expected a dotted name (string), got " .. type(name), 2) end
  if name == "" then return self end
  local cur, path = self, {}
  for part in name:gmatch("[^.]+") do
    if not is_module(cur) then
      error(("get: '%s' is not a module, so it has no '%s' (in '%s')"):format(table.concat(path, "."), part, name), 2)
    end
    local nxt = cur._modules.map[part] or cur._parameters.map[part] or cur._buffers.map[part]
    if nxt == nil then
      local valid = {}
      for _, d in ipairs({cur._modules, cur._parameters, cur._buffers}) do
        for _, k in ipairs(d.keys) do valid[#valid + 1] = k end
      end
      local where = #path == 0 and type_name(self) or ("'" .. table.concat(path, ".") .. "'")
      local hint = #valid > 0 and (" (did you mean '%s'? it has: %s)"):format(nearest(part, valid), table.concat(valid, ", ")) or " (it has no children)"
      error(("get: %s has no '%s'%s"):format(where, part, hint), 2)
    end
    path[#path + 1] = part
    cur = nxt
  end
  return cur
end

--- m:set(name, value) -- replaces the module (or parameter) at a dotted path
function Module:set(name, value)
  if type(name) ~= "string" or name == "" then error("set: expected a dotted name (string)", 2) end
  local parent_name, leaf = name:match("^(.*)%.([^.]+)$")
  if not parent_name then parent_name, leaf = "", name end
  local parent = self:get(parent_name)
  if not is_module(parent) then error(("set: '%s' is not a module"):format(parent_name), 2) end
  if is_module(value) then
    parent:add_module(leaf, value)
  elseif is_tensor(value) and parent._buffers.map[leaf] ~= nil then
    parent:register_buffer(leaf, value)
  elseif is_tensor(value) then
    parent:register_parameter(leaf, value)
  else
    error(("set: '%s' must be a module or a tensor, got %s"):format(name, type(value)), 2)
  end
  return self
end

------------------------------------------------------------------------------
-- modes and gradients

--- m:train([mode=true]) -> m; sets training mode on m and every module below
function Module:train(mode)
  if mode == nil then mode = true end
  for _, m in ipairs(self:modules()) do rawset(m, "training", mode and true or false) end
  return self
end

--- m:evaluate() -> m; evaluation mode (batch norm uses running stats, dropout is off)
function Module:evaluate() return self:train(false) end
Module.eval = Module.evaluate

--- m:zero_grad([set_to_none=true]) -- clears every parameter's gradient
function Module:zero_grad(set_to_none)
  for _, p in ipairs(self:parameters()) do
    if set_to_none == false then
      local g = p.grad
      if g then g:zero_() end
    else
      p.grad = nil
    end
  end
end

--- m:requires_grad_([flag=true]) -> m; freezes (false) or unfreezes a subtree
function Module:requires_grad_(flag)
  if flag == nil then flag = true end
  for _, p in ipairs(self:parameters()) do p:requires_grad_(flag) end
  return self
end

--- m:apply(fn) -> m; calls fn(module) on every child module then on m (as PyTorch)
function Module:apply(fn)
  for _, c in ipairs(self:children()) do c:apply(fn) end
  fn(self)
  return self
end

------------------------------------------------------------------------------
-- state

local function shape_str(t) return table.concat(t:size(), "x") end

-- the tensors a state_dict would hold, name -> {owner module, field, kind}
local function state_slots(self)
  local slots, order = {}, {}
  local seen = {}
  local function add(prefix, m)
    for _, k in ipairs(m._parameters.keys) do
      if m._parameters.map[k] ~= nil then
        slots[prefix .. k] = {m, k, "_parameters"}; order[#order + 1] = prefix .. k
      end
    end
    for _, k in ipairs(m._buffers.keys) do
      if m._buffers.map[k] ~= nil and not m._non_persistent[k] then
        slots[prefix .. k] = {m, k, "_buffers"}; order[#order + 1] = prefix .. k
      end
    end
    for _, k in ipairs(m._modules.keys) do
      local c = m._modules.map[k]
      if c ~= nil and not seen[c] then seen[c] = true; add(prefix .. k .. ".", c) end
    end
  end
  add("", self)
  return slots, order
end

local function state_dict(self)
  local slots, order = state_slots(self)
  local sd = {}
  for _, n in ipairs(order) do
    local s = slots[n]
    sd[n] = s[1][s[3]].map[s[2]]:detach()
  end
  return sd, order
end

--- m:state_dict() -> {name = tensor} with PyTorch's names; the tensors share
-- storage with the module's (detached). m:state_dict_keys() gives the order.
function Module:state_dict() return (state_dict(self)) end

--- m:state_dict_keys() -> the state_dict names in PyTorch's order
function Module:state_dict_keys()
  local _, names = state_slots(self)
  return names
end

--- m:load_state_dict(sd, {strict=true, skip={names}}) -> {missing_keys=, unexpected_keys=}
-- copies values in place; a shape mismatch is always an error naming the tensor
function Module:load_state_dict(sd, opts)
  local who = type_name(self) .. ":load_state_dict"
  if type(sd) ~= "table" then error(who .. ": expected a table of name -> tensor, got " .. type(sd), 2) end
  opts = options(who, opts, {strict = true, skip = {}}, 2)
  local skip = {}
  for _, n in ipairs(opts.skip) do skip[n] = true end
  local slots, order = state_slots(self)
  local missing, unexpected, mismatched = {}, {}, {}
  for _, n in ipairs(order) do
    if sd[n] == nil and not skip[n] then missing[#missing + 1] = n end
  end
  local keys = {}
  for n in pairs(sd) do keys[#keys + 1] = n end
  table.sort(keys)
  for _, n in ipairs(keys) do
    local t = sd[n]
    if not skip[n] then
      if slots[n] == nil then
        unexpected[#unexpected + 1] = n
      elseif not is_tensor(t) then
        error(("%s: '%s' must be a tensor, got %s"):format(who, n, type(t)), 2)
      else
        local cur = slots[n][1][slots[n][3]].map[slots[n][2]]
        local a, b = cur:size(), t:size()
        local same = #a == #b
        -- PyTorch stores num_batches_tracked as 0-d; accept a 1-element form too
        if not same and cur:numel() == 1 and t:numel() == 1 then same = true end
        if same then for i = 1, #a do if a[i] ~= b[i] then same = false end end end
        if not same then
          mismatched[#mismatched + 1] = ("%s: checkpoint has %s, the model has %s"):format(n, shape_str(t), shape_str(cur))
        end
      end
    end
  end
  local problems = {}
  if #mismatched > 0 then problems[#problems + 1] = "shape mismatch for " .. table.concat(mismatched, "; ") end
  if opts.strict then
    if #missing > 0 then problems[#problems + 1] = "missing keys: " .. table.concat(missing, ", ") end
    if #unexpected > 0 then problems[#problems + 1] = "unexpected keys: " .. table.concat(unexpected, ", ") end
  end
  if #problems > 0 then
    local hint = opts.strict and " (pass {strict=false} to load what matches" or " ("
    hint = hint .. (#mismatched > 0 and ", or skip={names} for a head of another size)" or ")")
    if hint == " ()" then hint = "" end
    error(("%s: %s%s"):format(who, table.concat(problems, "; "), hint), 2)
  end
  av.no_grad(function()
    for _, n in ipairs(keys) do
      local s = slots[n]
      if s and not skip[n] then
        local cur = s[1][s[3]].map[s[2]]
        local src = sd[n]
        if cur:numel() == 1 and src:numel() == 1 and cur:dim() ~= src:dim() then src = src:reshape(cur:size()) end
        cur:copy_(src)
      end
    end
  end)
  return {missing_keys = missing, unexpected_keys = unexpected}
end

--- m:save(path [, {metadata}]) -- writes the state_dict as safetensors that
-- PyTorch's load_state_dict accepts unchanged
function Module:save(path, metadata)
  if type(path) ~= "string" then error("save: expected a file path, got " .. type(path), 2) end
  local sd = self:state_dict()
  local meta = {format = "pt", producer = "aviary " .. av._VERSION, module = type_name(self)}
  for k, v in pairs(metadata or {}) do meta[k] = v end
  -- safetensors cannot hold the 0-d tensors of num_batches_tracked? it can: shape []
  av.save(path, sd, meta)
end

--- m:load(path, {strict=true, skip={names}}) -> report; reads safetensors weights
function Module:load(path, opts)
  if type(path) ~= "string" then error("load: expected a file path, got " .. type(path), 2) end
  local f = io.open(path, "rb")
  if not f then error(("load: cannot open weights file '%s' (check the path)"):format(path), 2) end
  f:close()
  local ok, sd = pcall(av.load, path)
  if not ok then error(("load: '%s' is not a readable safetensors file: %s"):format(path, tostring(sd)), 2) end
  local ok2, rep = pcall(self.load_state_dict, self, sd, opts)
  if not ok2 then error(("load '%s': %s"):format(path, tostring(rep)), 2) end
  return rep
end

local function is_device_name(arg)
  return type(arg) == "string" and (arg == "cpu" or arg:match("^cuda$") or arg:match("^cuda:%d+$")) ~= nil
end

--- m:to(device | dtype) -> m; moves or converts every parameter and buffer (and gradient) in place
-- of the old ones; the device is 'cpu', 'cuda' or 'cuda:N'. Create the optimizer after moving.
function Module:to(arg)
  local who = type_name(self) .. ":to"
  if is_device_name(arg) and arg ~= "cpu" then
    -- one clear message up front rather than one per parameter
    local ok, err = pcall(function() return av.empty(0):to(arg) end)
    if not ok then error(("%s: %s"):format(who, tostring(err):gsub("^.-Tensor:to: ", "")), 2) end
  end
  if arg == "cpu" then
    -- everything already lives on the CPU
    local on_cpu = true
    for _, p in ipairs(self:parameters()) do if p:device() ~= "cpu" then on_cpu = false end end
    if on_cpu then return self end
  end
  for _, m in ipairs(self:modules()) do
    for _, field in ipairs({"_parameters", "_buffers"}) do
      local d = m[field]
      for _, k in ipairs(d.keys) do
        local t = d.map[k]
        if t ~= nil then
          local floating = t:dtype() == "float32" or t:dtype() == "float64" or t:dtype() == "float16" or t:dtype() == "bfloat16"
          local is_dtype = type(arg) == "string" and (arg:match("^float") or arg:match("^bfloat") or arg == "double" or arg == "half")
          if not is_dtype or floating then
            local ok, q = pcall(t.to, t, arg)
            if not ok then error(("%s: cannot move %s: %s"):format(who, k, tostring(q)), 2) end
            if q ~= t then
              if field == "_parameters" then
                local rg, g = t.requires_grad, t.grad
                q = q:detach()
                if rg then q:requires_grad_(true) end
                -- the accumulated gradient follows its parameter, as in PyTorch
                if g ~= nil and is_device_name(arg) then q.grad = g:to(arg) end
                param_marks[q] = true
              end
              d.map[k] = q
            end
          end
        end
      end
    end
  end
  return self
end
--- m:cuda([index]) -> m; m:cpu() -> m: Module:to for a device
function Module:cuda(index)
  if index ~= nil and math.type(index) ~= "integer" then
    error(type_name(self) .. ":cuda: expected a device index (0 for 'cuda:0'), got " .. type(index), 2)
  end
  return self:to(index and ("cuda:" .. index) or "cuda")
end
function Module:cpu() return self:to("cpu") end
function Module:float() return self:to("float32") end
function Module:double() return self:to("float64") end

------------------------------------------------------------------------------
-- hooks

local function hook_list(self, kind)
  local hooks = rawget(self, "_hooks")
  if hooks == nil then
    hooks = {}
    rawset(self, "_hooks", hooks)
  end
  hooks[kind] = hooks[kind] or {}
  return hooks[kind]
end

local function add_hook(self, kind, fn, who)
  if type(fn) ~= "function" then error(who .. ": expected a function, got " .. type(fn), 3) end
  local list = hook_list(self, kind)
  local entry = {fn = fn}
  list[#list + 1] = entry
  return {remove = function()
    for i, e in ipairs(list) do if e == entry then table.remove(list, i); break end end
    local hooks = rawget(self, "_hooks")
    if hooks then
      local any = false
      for _, l in pairs(hooks) do if #l > 0 then any = true end end
      if not any then rawset(self, "_hooks", nil) end
    end
  end}
end

--- m:register_forward_pre_hook(fn) -> handle; fn(module, inputs) runs before
-- forward and may return new inputs (a table of arguments, or one tensor)
function Module:register_forward_pre_hook(fn) return add_hook(self, "pre", fn, "register_forward_pre_hook") end
--- m:register_forward_hook(fn) -> handle; fn(module, inputs, output) runs after
-- forward and may return a replacement output
function Module:register_forward_hook(fn) return add_hook(self, "fwd", fn, "register_forward_hook") end
--- m:register_full_backward_hook(fn) -> handle; fn(module, grad_input, grad_output)
-- runs when the gradients of the module's inputs are computed (tables of
-- tensors, nil where an input needs none); it may return new grad_input
function Module:register_full_backward_hook(fn) return add_hook(self, "bwd", fn, "register_full_backward_hook") end
Module.register_backward_hook = Module.register_full_backward_hook
--- m:register_full_backward_pre_hook(fn) -> handle; fn(module, grad_output) runs
-- when the gradients of the outputs arrive; it may return new grad_output
function Module:register_full_backward_pre_hook(fn) return add_hook(self, "bwdpre", fn, "register_full_backward_pre_hook") end

local function as_args(v)
  if type(v) == "table" and not is_tensor(v) and not is_module(v) then return v end
  return {v, n = 1}
end

function Module._call_with_hooks(self, ...)
  local hooks = rawget(self, "_hooks")
  local args = table.pack(...)
  for _, e in ipairs(hooks.pre or {}) do
    local r = e.fn(self, args)
    if r ~= nil then
      args = as_args(r)
      args.n = args.n or #args
    end
  end
  local bwd, bwdpre = hooks.bwd or {}, hooks.bwdpre or {}
  local want_bwd = (#bwd > 0 or #bwdpre > 0) and av.is_grad_enabled()
  local state
  if want_bwd then
    state = {grad_input = {}, grad_output = {}, n_in = 0, n_in_seen = 0}
    for i = 1, args.n do
      local a = args[i]
      if is_tensor(a) and a.requires_grad then
        -- an alias private to this call, so its gradient is this module's alone
        local alias = a:view_as(a)
        args[i] = alias
        state.n_in = state.n_in + 1
        alias:register_hook(function(g)
          state.grad_input[i] = g
          state.n_in_seen = state.n_in_seen + 1
          if state.n_in_seen < state.n_in then return nil end
          local replaced
          for _, e in ipairs(bwd) do
            local r = e.fn(self, state.grad_input, state.grad_output)
            if r ~= nil then state.grad_input = as_args(r); replaced = true end
          end
          if replaced then return state.grad_input[i] end
          return nil
        end)
      end
    end
  end
  local out = self:forward(unpack(args, 1, args.n))
  for _, e in ipairs(hooks.fwd or {}) do
    local r = e.fn(self, args, out)
    if r ~= nil then out = r end
  end
  if want_bwd then
    local outs = is_tensor(out) and {out} or (type(out) == "table" and out or {})
    local n_out, seen = 0, 0
    for _, o in ipairs(outs) do if is_tensor(o) and o.requires_grad then n_out = n_out + 1 end end
    for j, o in ipairs(outs) do
      if is_tensor(o) and o.requires_grad then
        -- hook an alias so the gradient seen is the one flowing out of this module
        local alias = o:view_as(o)
        outs[j] = alias
        alias:register_hook(function(g)
          for _, e in ipairs(bwdpre) do
            local r = e.fn(self, {g})
            if r ~= nil then g = is_tensor(r) and r or r[1] end
          end
          state.grad_output[j] = g
          seen = seen + 1
          if seen == n_out and state.n_in == 0 then
            for _, e in ipairs(bwd) do e.fn(self, {}, state.grad_output) end
          end
          return g
        end)
      end
    end
    if is_tensor(out) then out = outs[1] end
  end
  return out
end

------------------------------------------------------------------------------
-- printing, like PyTorch's module repr

function Module:extra_repr() return "" end

local function indent(s, n)
  local pad = string.rep(" ", n)
  return (s:gsub("\n", "\n" .. pad))
end

function Module.__tostring(self)
  local name = type_name(self)
  local extra = self:extra_repr()
  local lines = {}
  if extra ~= "" then
    for l in (extra .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  end
  local mods = self._modules
  for _, k in ipairs(mods.keys) do
    lines[#lines + 1] = "(" .. k .. "): " .. indent(tostring(mods.map[k]), 2)
  end
  if #mods.keys == 0 and #lines <= 1 then return name .. "(" .. (lines[1] or "") .. ")" end
  return name .. "(\n  " .. table.concat(lines, "\n  ") .. "\n)"
end

-- the layers, containers and criteria live in aviary/nn/layers.lua
require("aviary.nn.layers")(nn, {options = options, pyrepr = pyrepr, pair = pair})

return setmetatable(nn, {
  __index = function(t, k)
    local ok, mod = pcall(require, "aviary.nn." .. tostring(k))
    if ok then rawset(t, k, mod); return mod end
    local names = {}
    for n in pairs(nn) do if type(n) == "string" and not n:match("^_") then names[#names + 1] = n end end
    table.sort(names)
    error(("aviary.nn has no '%s' (did you mean '%s'?)"):format(tostring(k), nearest(tostring(k), names)), 2)
  end,
})
