--- aviary.interpret.attr_common: the helpers aviary.interpret's methods share (option checks,
-- forward functions, targets, gradients of the target scores, baselines, seeded random draws).
-- Private to aviary.interpret; the public API is documented there.
local av = require "aviary"
local util = require "aviary.util"

local C = {}

local function sorted_keys(set)
  local names = {}
  for n in pairs(set) do names[#names + 1] = n end
  table.sort(names)
  return names
end

--- C.check_opts(who, opts, allowed) -> opts (a table); an option not in the set `allowed` is an
-- error naming the method, the option, the nearest valid name and every valid one
function C.check_opts(who, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("%s: options must be a table, got %s"):format(who, type(opts)), 3) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = sorted_keys(allowed)
      local near = util.nearest(tostring(k), names)
      error(("%s: unknown option '%s'%s (valid: %s)"):format(who, tostring(k),
        near and (" (did you mean '" .. near .. "'?)") or "", table.concat(names, ", ")), 3)
    end
  end
  return opts
end

--- C.set(list) -> {name = true} for each name of the list (and of the optional extra lists)
function C.set(...)
  local s = {}
  for _, list in ipairs({...}) do for _, n in ipairs(list) do s[n] = true end end
  return s
end

--- C.forward_fn(who, f) -> a Lua function(x) -> scores, from an nn.Module or a function; and, for a
-- module
function C.forward_fn(who, f)
  if type(f) == "function" then return f end
  local mt = getmetatable(f)
  if type(f) == "table" and (type(f.forward) == "function" or (mt and mt.__call)) then
    return function(x) return f(x) end
  end
  error(("%s: forward_func must be an nn.Module or a function(x) -> scores, got %s"):format(who, type(f)), 3)
end

--- C.check_input(who, x) -- x must be a floating point tensor with a batch dim
function C.check_input(who, x)
  if not av.is_tensor(x) then error(("%s: inputs must be a tensor, got %s"):format(who, type(x)), 3) end
  local dt = x:dtype()
  if dt ~= "float32" and dt ~= "float64" then
    error(("%s: inputs must be float32 or float64, got %s"):format(who, dt), 3)
  end
  if x:dim() < 2 then error(("%s: inputs must have a batch dim (N x ...), got size %s"):format(who, C.shape(x)), 3) end
end

--- C.shape(t) -> "2x3x64x64"
function C.shape(t) return table.concat(t:size(), "x") end

--- C.check_scores(who, out, n) -- a forward result must be an N x C tensor
function C.check_scores(who, out, n)
  if not av.is_tensor(out) then error(("%s: the forward function returned %s, not a tensor of scores"):format(who, type(out)), 0) end
  if out:dim() ~= 2 or out:size(1) ~= n then
    error(("%s: the forward function must return N x C scores (N = %d), got size %s"):format(who, n, C.shape(out)), 0)
  end
end

--- C.targets(who, target, f, x) -> a Lua list of N 1-based targets. target: a number (every example),
-- a list or a 1-d integer tensor of N, or nil (each example's predicted class, from f(x) without grad)
function C.targets(who, target, f, x)
  local n = x:size(1)
  local list = {}
  local out
  if target == nil then
    out = av.no_grad(f, x)
    C.check_scores(who, out, n)
    local idx = out:argmax(2)
    for i = 1, n do list[i] = idx[i] end
    return list, out
  elseif math.type(target) == "integer" or (type(target) == "number" and target == math.floor(target)) then
    for i = 1, n do list[i] = math.tointeger(target) end
  elseif av.is_tensor(target) then
    if target:dim() ~= 1 or target:numel() ~= n then
      error(("%s: target must be a number or a list of %d class numbers, got a tensor of size %s"):format(who, n, C.shape(target)), 3)
    end
    for i = 1, n do list[i] = math.tointeger(target[i]) or target[i] end
  elseif type(target) == "table" then
    if #target ~= n then
      error(("%s: target must be a number or a list of %d class numbers, got a list of %d"):format(who, n, #target), 3)
    end
    for i = 1, n do list[i] = target[i] end
  else
    error(("%s: target must be a class number, a list of them or nil, got %s"):format(who, type(target)), 3)
  end
  for i = 1, n do
    if math.type(list[i]) ~= "integer" then
      local v = list[i]
      if type(v) == "number" and v == math.floor(v) then list[i] = math.tointeger(v)
      else error(("%s: target %d is not an integer class number (%s)"):format(who, i, tostring(v)), 3) end
    end
  end
  return list
end

--- C.check_target_range(who, targets, ncls) -- each target in 1..ncls
function C.check_target_range(who, targets, ncls)
  for i, t in ipairs(targets) do
    if t < 1 or t > ncls then
      error(("%s: target %d is out of range: %d, the model gives %d classes (targets are 1-based)"):format(
        who, i, t, ncls), 0)
    end
  end
end

--- C.repeat_list(list, k) -> the list repeated k times (sample-major, for expanded batches)
function C.repeat_list(list, k)
  local out = {}
  for _ = 1, k do for i = 1, #list do out[#out + 1] = list[i] end end
  return out
end

--- C.select(who, out, targets) -> the N target scores (N x 1), checked against out's size
function C.select(who, out, targets)
  C.check_scores(who, out, #targets)
  C.check_target_range(who, targets, out:size(2))
  return out:gather(2, av.tensor(targets):view(#targets, 1))
end

--- C.scores(who, f, x, targets) -> the N target scores of f(x) without grad (a 1-d float64 tensor)
function C.scores(who, f, x, targets)
  return av.no_grad(function() return C.select(who, f(x), targets):view(-1):double() end)
end

--- C.params(f) -> the parameters of an nn.Module forward_func (nil for a plain function)
function C.params(f)
  if type(f) == "table" and type(f.parameters) == "function" then return f:parameters() end
  return nil
end

--- C.frozen(params, fn, ...) -> fn(...) with requires_grad off on the given parameters (those that had it),
-- restored afterwards even on error: av.grad then skips every weight gradient, which the attributions never
-- use (the engine computes the gradients of all leaves that require grad); .grad is never touched
function C.frozen(params, fn, ...)
  if not params or #params == 0 then return fn(...) end
  local off = {}
  for _, p in ipairs(params) do
    if p.requires_grad then off[#off + 1] = p; p.requires_grad = false end
  end
  local r = table.pack(pcall(fn, ...))
  for _, p in ipairs(off) do p.requires_grad = true end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

--- C.input_grad(who, f, x, targets, relu_mode, params) -> d sum(target scores) / d x (detached), f(x) detached.
-- relu_mode (0, 1 guided, 2 deconvolution) applies during this call only, restored even on error.
function C.input_grad(who, f, x, targets, relu_mode, params)
  local prev
  if relu_mode and relu_mode ~= 0 then prev = av._attr.set_relu_grad_mode(relu_mode) end
  local ok, g, out = pcall(C.frozen, params, function()
    local _ <close> = av.enable_grad()
    local xi = x:detach():clone():requires_grad_()
    local o = f(xi)
    local sel = C.select(who, o, targets)
    local grads = av.grad({sel:sum()}, {xi}, {allow_unused = true})
    local gr = grads[1]
    if not gr then gr = av.zeros_like(x) end
    return gr:detach(), o:detach()
  end)
  if prev then av._attr.set_relu_grad_mode(prev) end
  if not ok then error(g, 0) end
  return g, out
end

--- C.baselines(who, b, x, name) -> a tensor broadcastable to x: nil -> zeros, a number -> filled,
-- a tensor of x's size or 1 x (x's size without the batch) -> expanded; anything else is an error
function C.baselines(who, b, x, name)
  name = name or "baselines"
  if b == nil then return av.zeros_like(x) end
  if type(b) == "number" then return av.full_like(x, b) end
  if not av.is_tensor(b) then error(("%s: %s must be nil, a number or a tensor, got %s"):format(who, name, type(b)), 3) end
  local xs, bs = x:size(), b:size()
  local ok = #xs == #bs and (bs[1] == xs[1] or bs[1] == 1)
  for d = 2, #xs do ok = ok and xs[d] == bs[d] end
  if not ok then
    local one = {1}
    for d = 2, #xs do one[d] = xs[d] end
    error(("%s: %s of size %s do not match the input of size %s (give %s or %s)"):format(who, name, C.shape(b),
      C.shape(x), C.shape(x), table.concat(one, "x")), 3)
  end
  b = b:to(x:dtype())
  if bs[1] ~= xs[1] then b = b:expand(table.unpack(xs)) end
  return b:contiguous()
end

--- C.with_seed(seed, fn, ...) -> fn(...); with a seed, the generator is seeded for the call and its
-- state restored afterwards, so a seeded attribution repeats and leaves other draws alone
function C.with_seed(seed, fn, ...)
  if seed == nil then return fn(...) end
  local state = av.get_rng_state()
  av.manual_seed(seed)
  local r = table.pack(pcall(fn, ...))
  av.set_rng_state(state)
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

--- C.positive_int(who, name, v, default) -> v checked to be an integer >= 1
function C.positive_int(who, name, v, default)
  if v == nil then return default end
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) or v < 1 then
    error(("%s: %s must be a positive integer, got %s"):format(who, name, tostring(v)), 3)
  end
  return math.tointeger(v)
end

--- C.sum_rest(t) -> per-example sums (1-d float64 tensor of t:size(1))
function C.sum_rest(t)
  return t:double():reshape(t:size(1), -1):sum(2):view(-1)
end

--- C.class(name [, tostring_fn]) -> a method class: interpret.Name(f, opts) makes an object with
-- :attribute(x, opts); printed as "interpret.<name>" unless tostring_fn says otherwise
function C.class(name, tostring_fn)
  local cls = {name = name}
  cls.__index = cls
  cls.__tostring = tostring_fn or function(self) return "interpret." .. self.name end
  return cls
end

return C
