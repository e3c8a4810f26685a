--- aviary.nn.init: weight initialisation, named and parameterised as
-- torch.nn.init (PyTorch 1.13):
--   local init = require "aviary.nn.init"
--   init.kaiming_uniform_(w, {a = math.sqrt(5)})
--   init.xavier_normal_(w, {gain = init.calculate_gain("tanh")})
--   init.zeros_(b)
-- Every `*_` function fills its tensor in place without recording the
-- autograd graph (so it works on parameters that require grad) and returns
-- the tensor. Parameters may be given positionally in torch's order, in a
-- trailing options table, or both: `init.uniform_(w, -0.1, 0.1)`,
-- `init.uniform_(w, {a = -0.1, b = 0.1})`. An unknown option name is an error
-- naming the nearest valid one. Random draws come from aviary's generator
-- (av.manual_seed), so the values differ from torch's but the distributions,
-- bounds and deterministic fills are the same.
--
-- @module aviary.nn.init
-- @function calculate_gain(nonlinearity, param) -> the recommended gain:
--   1 for linear, conv1d/2d/3d, conv_transpose1d/2d/3d and sigmoid; 5/3 for
--   tanh; sqrt(2) for relu; sqrt(2 / (1 + param^2)) for leaky_relu (param =
--   negative slope, default 0.01); 3/4 for selu
-- @function fan_in_and_fan_out(t) -> fan_in, fan_out (t:size(2) and t:size(1)
--   times the product of the remaining sizes); t needs 2 or more dims.
--   Also named _calculate_fan_in_and_fan_out.
-- @function uniform_(t, a=0, b=1) -> t filled from U(a, b)
-- @function normal_(t, mean=0, std=1) -> t filled from N(mean, std^2)
-- @function trunc_normal_(t, {mean=0, std=1, a=-2, b=2}) -> t filled from
--   N(mean, std^2) truncated to [a, b] (inverse CDF, as torch)
-- @function constant_(t, val), ones_(t), zeros_(t) -> t filled with a value
-- @function eye_(t) -> the 2-d t set to the identity
-- @function dirac_(t, {groups=1}) -> the 3/4/5-d t set to the Dirac delta
--   (a convolution with it keeps its input's channels)
-- @function xavier_uniform_(t, {gain=1}) -> U(-b, b), b = gain*sqrt(6/(fan_in+fan_out))
-- @function xavier_normal_(t, {gain=1}) -> N(0, std^2), std = gain*sqrt(2/(fan_in+fan_out))
-- @function kaiming_uniform_(t, {a=0, mode='fan_in', nonlinearity='leaky_relu'})
--   -> U(-b, b), b = gain*sqrt(3/fan), gain = calculate_gain(nonlinearity, a)
-- @function kaiming_normal_(t, {a=0, mode='fan_in', nonlinearity='leaky_relu'})
--   -> N(0, std^2), std = gain/sqrt(fan)
-- @function orthogonal_(t, {gain=1}) -> t (2 or more dims, trailing dims
--   flattened) set to gain times a random (semi-)orthogonal matrix
-- @function sparse_(t, sparsity, {std=0.01}) -> the 2-d t from N(0, std^2)
--   with ceil(sparsity * rows) random zeros in each column
local av = require "aviary"


local init = {}

------------------------------------------------------------------------------
-- argument handling

-- the name the caller probably meant, for "did you mean" messages
local nearest = require("aviary.util").nearest

local function fail(fmt, ...) error(fmt:format(...), 3) end

local function check_tensor(who, t)
  if not av.is_tensor(t) then
    error(("nn.init.%s: expected a tensor as argument 1, got %s"):format(who, type(t)), 3)
  end
end

local floating = {float32 = true, float64 = true, float16 = true, bfloat16 = true}
local function check_floating(who, t)
  if not floating[t:dtype()] then
    error(("nn.init.%s: expected a floating point tensor, got %s"):format(who, t:dtype()), 3)
  end
end

-- Collects the parameters of nn.init.<who>(t, ...): values in torch's order
-- (`names`), then optionally an options table keyed by the same names.
-- Missing ones take `defaults` (a name absent from defaults is required).
local function params(who, names, defaults, ...)
  local n = select("#", ...)
  local args = {...}
  local opts
  if n > 0 and type(args[n]) == "table" then opts = args[n]; n = n - 1 end
  if n > #names then
    error(("nn.init.%s: expected at most %d argument%s after the tensor (%s), got %d"):format(
      who, #names, #names == 1 and "" or "s", table.concat(names, ", "), n), 3)
  end
  local out = {}
  for i = 1, n do out[names[i]] = args[i] end
  if opts then
    local valid = {}
    for _, k in ipairs(names) do valid[k] = true end
    for k, v in pairs(opts) do
      if type(k) ~= "string" then
        error(("nn.init.%s: option names must be strings, got a %s key"):format(who, type(k)), 3)
      end
      if not valid[k] then
        local hint = #names == 0 and "it takes no options" or ("did you mean '%s'?"):format(nearest(k, names))
        error(("nn.init.%s: unknown option '%s' (%s)"):format(who, k, hint), 3)
      end
      if out[k] ~= nil then
        error(("nn.init.%s: '%s' is given both as an argument and as an option"):format(who, k), 3)
      end
      out[k] = v
    end
  end
  for _, k in ipairs(names) do
    if out[k] == nil then
      if defaults[k] == nil then error(("nn.init.%s: '%s' is required"):format(who, k), 3) end
      out[k] = defaults[k]
    end
  end
  return out
end

local function check_number(who, name, v)
  if type(v) ~= "number" then
    error(("nn.init.%s: %s must be a number, got %s"):format(who, name, type(v)), 3)
  end
end

local function sizes(t) return t:size() end
local function shape_str(t)
  local s = sizes(t)
  return #s == 0 and "()" or table.concat(s, "x")
end

------------------------------------------------------------------------------
-- gains and fans

local linear_fns = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                    "conv_transpose3d"}
local nonlinearities = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                        "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"}

local function gain_of(who, nonlinearity, param)
  if type(nonlinearity) ~= "string" then
    error(("nn.init.%s: nonlinearity must be a string (one of %s), got %s"):format(
      who, table.concat(nonlinearities, ", "), type(nonlinearity)), 3)
  end
  for _, f in ipairs(linear_fns) do
    if nonlinearity == f then return 1 end
  end
  if nonlinearity == "sigmoid" then return 1 end
  if nonlinearity == "tanh" then return 5.0 / 3 end
  if nonlinearity == "relu" then return math.sqrt(2.0) end
  if nonlinearity == "leaky_relu" then
    local slope = param
    if slope == nil then slope = 0.01 end
    if type(slope) ~= "number" then
      error(("nn.init.%s: negative_slope %s not a valid number"):format(who, tostring(slope)), 3)
    end
    return math.sqrt(2.0 / (1 + slope ^ 2))
  end
  if nonlinearity == "selu" then return 3.0 / 4 end
  error(("nn.init.%s: unsupported nonlinearity '%s' (did you mean '%s'? valid: %s)"):format(
    who, nonlinearity, nearest(nonlinearity, nonlinearities), table.concat(nonlinearities, ", ")), 3)
end

--- calculate_gain(nonlinearity, param) -> gain (a number)
function init.calculate_gain(nonlinearity, param)
  return gain_of("calculate_gain", nonlinearity, param)
end

local function fans(who, t)
  local s = sizes(t)
  if #s < 2 then
    error(("nn.init.%s: fan in and fan out can not be computed for a tensor with fewer than 2 dimensions (size %s)"):format(
      who, shape_str(t)), 3)
  end
  local receptive = 1
  for i = 3, #s do receptive = receptive * s[i] end
  return s[2] * receptive, s[1] * receptive
end

--- fan_in_and_fan_out(t) -> fan_in, fan_out
function init.fan_in_and_fan_out(t)
  check_tensor("fan_in_and_fan_out", t)
  return fans("fan_in_and_fan_out", t)
end
init._calculate_fan_in_and_fan_out = init.fan_in_and_fan_out

local modes = {"fan_in", "fan_out"}
-- the mode in lower case, as torch's _calculate_correct_fan takes it
local function check_mode(who, mode)
  if type(mode) ~= "string" then
    error(("nn.init.%s: mode must be a string, one of 'fan_in', 'fan_out'; got %s"):format(who, type(mode)), 3)
  end
  local m = mode:lower()
  if m ~= "fan_in" and m ~= "fan_out" then
    error(("nn.init.%s: mode '%s' not supported (did you mean '%s'? valid: 'fan_in', 'fan_out')"):format(
      who, mode, nearest(m, modes)), 3)
  end
  return m
end

------------------------------------------------------------------------------
-- inverse error function over tensors (av has erf but no erfinv), in
-- float64: Giles' single-precision approximation ("Approximating the erfinv
-- function", GPU Computing Gems, 2010) refined by two Newton steps on
-- erf(x) = y, as torch's own erfinv refines its start. Within 1e-9 of +-1,
-- where erf rounds too coarsely for Newton, x solves erfc(x) = 1 - |y| by
-- fixed-point iteration on the asymptotic series of erfc (12 terms: relative
-- error below 1e-8 there). +-inf at +-1, NaN outside [-1, 1].
local function poly(w, coefs)
  local p = av.full_like(w, coefs[1])
  for i = 2, #coefs do p = p * w + coefs[i] end
  return p
end
local central = {2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                 -0.00125372503, -0.00417768164, 0.246640727, 1.50140941}
local tail = {-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
              -0.0076224613, 0.00943887047, 1.00167406, 2.83297682}
local far = 1 - 1e-9

-- x > 0 with erfc(x) = q, for 0 < q <= 1e-9 (x > 4.3):
-- erfc(x) = exp(-x^2) / (x sqrt(pi)) * sum_n (-1)^n (2n-1)!! / (2x^2)^n
local function erfcinv_far(q)
  local t = q:log():neg()
  local x = t:sqrt()
  for _ = 1, 8 do
    local r = (x * x * 2):reciprocal()
    local term, sum = av.ones_like(x), av.ones_like(x)
    for n = 1, 12 do
      term = term * r * (1 - 2 * n)
      sum = sum + term
    end
    x = (t - (x * math.sqrt(math.pi)):log() + sum:log()):sqrt()
  end
  return x
end

local function erfinv(y)
  local size = y:size()
  y = y:double():reshape(-1)
  local w = (-(y * y)):log1p():neg()
  local x = av.where(w:lt(5), poly(w - 2.5, central), poly(w:sqrt() - 3, tail)) * y
  local two_over_sqrt_pi = 2 / math.sqrt(math.pi)
  for _ = 1, 2 do
    x = x - (x:erf() - y) / ((-(x * x)):exp() * two_over_sqrt_pi)
  end
  local ay = y:abs()
  local in_far = ay:ge(far):logical_and(ay:lt(1))
  if in_far:any():item() ~= 0 then
    local idx = in_far:nonzero():reshape(-1)
    local yf = y:index_select(1, idx)
    x = x:clone():scatter_(1, idx, erfcinv_far(1 - yf:abs()) * yf:sign())
  end
  x = av.where(ay:eq(1), y * math.huge, x)
  x = av.where(ay:gt(1), 0 / 0, x)
  return x:reshape(size)
end
init._erfinv = erfinv

-- Phi(x) in double precision through av.erf
local function norm_cdf(x)
  if x == math.huge then return 1.0 end
  if x == -math.huge then return 0.0 end
  return (1 + av.tensor(x / math.sqrt(2), {dtype = "float64"}):erf():item()) / 2
end

------------------------------------------------------------------------------
-- fills

local function no_grad(fn) return av.no_grad(fn) end

--- uniform_(t, a=0, b=1) -> t
function init.uniform_(t, ...)
  check_tensor("uniform_", t)
  local o = params("uniform_", {"a", "b"}, {a = 0.0, b = 1.0}, ...)
  check_number("uniform_", "a", o.a)
  check_number("uniform_", "b", o.b)
  check_floating("uniform_", t)
  if o.a > o.b then fail("nn.init.uniform_: expected a <= b, got a = %s and b = %s", o.a, o.b) end
  return no_grad(function() return t:uniform_(o.a, o.b) end)
end

--- normal_(t, mean=0, std=1) -> t
function init.normal_(t, ...)
  check_tensor("normal_", t)
  local o = params("normal_", {"mean", "std"}, {mean = 0.0, std = 1.0}, ...)
  check_number("normal_", "mean", o.mean)
  check_number("normal_", "std", o.std)
  check_floating("normal_", t)
  if not (o.std >= 0) then fail("nn.init.normal_: expected std >= 0, got %s", o.std) end
  return no_grad(function() return t:normal_(o.mean, o.std) end)
end

--- trunc_normal_(t, {mean=0, std=1, a=-2, b=2}) -> t
-- torch's algorithm: u ~ U(2 Phi(alpha) - 1, 2 Phi(beta) - 1), then
-- x = mean + std * sqrt(2) * erfinv(u), clamped to [a, b] (in float64 here).
function init.trunc_normal_(t, ...)
  check_tensor("trunc_normal_", t)
  local o = params("trunc_normal_", {"mean", "std", "a", "b"}, {mean = 0.0, std = 1.0, a = -2.0, b = 2.0}, ...)
  for _, k in ipairs({"mean", "std", "a", "b"}) do check_number("trunc_normal_", k, o[k]) end
  check_floating("trunc_normal_", t)
  if not (o.std > 0) then fail("nn.init.trunc_normal_: expected std > 0, got %s", o.std) end
  if not (o.a <= o.b) then fail("nn.init.trunc_normal_: expected a <= b, got a = %s and b = %s", o.a, o.b) end
  if t:numel() == 0 then return t end
  local dt = t:dtype()
  if (dt == "float32" or dt == "float64") and (o.b - o.mean) / o.std >= 8 and (o.mean - o.a) / o.std >= 8 then
    -- bounds 8 or more standard deviations out (googlenet's std 0.01 in
    -- [-2, 2]): the truncated normal is the normal to within 1e-15, so draw
    -- and clamp, an order of magnitude faster than the inverse CDF
    return no_grad(function() return t:normal_(o.mean, o.std):clamp_(o.a, o.b) end)
  end
  local l = norm_cdf((o.a - o.mean) / o.std)
  local u = norm_cdf((o.b - o.mean) / o.std)
  return no_grad(function()
    local draw = av.empty(sizes(t), {dtype = "float64"}):uniform_(2 * l - 1, 2 * u - 1)
    local x = erfinv(draw):mul_(o.std * math.sqrt(2.0)):add_(o.mean):clamp_(o.a, o.b)
    return t:copy_(x)
  end)
end

--- constant_(t, val) -> t
function init.constant_(t, ...)
  check_tensor("constant_", t)
  local o = params("constant_", {"val"}, {}, ...)
  check_number("constant_", "val", o.val)
  return no_grad(function() return t:fill_(o.val) end)
end

--- ones_(t) -> t
function init.ones_(t, ...)
  check_tensor("ones_", t)
  params("ones_", {}, {}, ...)
  return no_grad(function() return t:fill_(1) end)
end

--- zeros_(t) -> t
function init.zeros_(t, ...)
  check_tensor("zeros_", t)
  params("zeros_", {}, {}, ...)
  return no_grad(function() return t:fill_(0) end)
end

--- eye_(t) -> t (2-d)
function init.eye_(t, ...)
  check_tensor("eye_", t)
  params("eye_", {}, {}, ...)
  if t:dim() ~= 2 then
    fail("nn.init.eye_: only tensors with 2 dimensions are supported, got size %s", shape_str(t))
  end
  local s = sizes(t)
  return no_grad(function() return t:copy_(av.eye(s[1], s[2])) end)
end

--- dirac_(t, {groups=1}) -> t (3, 4 or 5 dims)
function init.dirac_(t, ...)
  check_tensor("dirac_", t)
  local o = params("dirac_", {"groups"}, {groups = 1}, ...)
  local d = t:dim()
  if d < 3 or d > 5 then
    fail("nn.init.dirac_: only tensors with 3, 4, or 5 dimensions are supported, got size %s", shape_str(t))
  end
  local g = type(o.groups) == "number" and math.tointeger(o.groups) or nil
  if not g then fail("nn.init.dirac_: groups must be an integer, got %s", tostring(o.groups)) end
  if g < 1 then fail("nn.init.dirac_: groups must be positive, got %d", g) end
  local s = sizes(t)
  if s[1] % g ~= 0 then
    fail("nn.init.dirac_: dim 1 (size %d) must be divisible by groups (%d)", s[1], g)
  end
  local per_group = s[1] // g
  local min_dim = math.min(per_group, s[2])
  return no_grad(function()
    t:fill_(0)
    for gi = 0, g - 1 do
      for c = 0, min_dim - 1 do
        local v = t:select(1, gi * per_group + c + 1):select(1, c + 1)
        for k = 3, d do v = v:select(1, s[k] // 2 + 1) end
        v:fill_(1)
      end
    end
    return t
  end)
end

--- xavier_uniform_(t, {gain=1}) -> t
function init.xavier_uniform_(t, ...)
  check_tensor("xavier_uniform_", t)
  local o = params("xavier_uniform_", {"gain"}, {gain = 1.0}, ...)
  check_number("xavier_uniform_", "gain", o.gain)
  local fan_in, fan_out = fans("xavier_uniform_", t)
  check_floating("xavier_uniform_", t)
  local std = o.gain * math.sqrt(2.0 / (fan_in + fan_out))
  local bound = math.sqrt(3.0) * std
  return no_grad(function() return t:uniform_(-bound, bound) end)
end

--- xavier_normal_(t, {gain=1}) -> t
function init.xavier_normal_(t, ...)
  check_tensor("xavier_normal_", t)
  local o = params("xavier_normal_", {"gain"}, {gain = 1.0}, ...)
  check_number("xavier_normal_", "gain", o.gain)
  local fan_in, fan_out = fans("xavier_normal_", t)
  check_floating("xavier_normal_", t)
  local std = o.gain * math.sqrt(2.0 / (fan_in + fan_out))
  return no_grad(function() return t:normal_(0, std) end)
end

local kaiming_names = {"a", "mode", "nonlinearity"}
local kaiming_defaults = {a = 0, mode = "fan_in", nonlinearity = "leaky_relu"}

--- kaiming_uniform_(t, {a=0, mode='fan_in', nonlinearity='leaky_relu'}) -> t
function init.kaiming_uniform_(t, ...)
  check_tensor("kaiming_uniform_", t)
  local o = params("kaiming_uniform_", kaiming_names, kaiming_defaults, ...)
  check_number("kaiming_uniform_", "a", o.a)
  local mode = check_mode("kaiming_uniform_", o.mode)
  local gain = gain_of("kaiming_uniform_", o.nonlinearity, o.a)
  check_floating("kaiming_uniform_", t)
  if t:numel() == 0 then return t end -- torch warns and leaves it (any number of dims)
  local fan_in, fan_out = fans("kaiming_uniform_", t)
  local fan = mode == "fan_in" and fan_in or fan_out
  local bound = math.sqrt(3.0) * gain / math.sqrt(fan)
  return no_grad(function() return t:uniform_(-bound, bound) end)
end

--- kaiming_normal_(t, {a=0, mode='fan_in', nonlinearity='leaky_relu'}) -> t
function init.kaiming_normal_(t, ...)
  check_tensor("kaiming_normal_", t)
  local o = params("kaiming_normal_", kaiming_names, kaiming_defaults, ...)
  check_number("kaiming_normal_", "a", o.a)
  local mode = check_mode("kaiming_normal_", o.mode)
  local gain = gain_of("kaiming_normal_", o.nonlinearity, o.a)
  check_floating("kaiming_normal_", t)
  if t:numel() == 0 then return t end
  local fan_in, fan_out = fans("kaiming_normal_", t)
  local fan = mode == "fan_in" and fan_in or fan_out
  local std = gain / math.sqrt(fan)
  return no_grad(function() return t:normal_(0, std) end)
end

-- Rows of m (k x n, k <= n, float64) made orthonormal by classical
-- Gram-Schmidt with reorthogonalisation (CGS2). The result is the Q of the
-- QR factorisation with a positive diagonal of R, which is what torch's
-- orthogonal_ gets from linalg.qr after multiplying by sign(diag(R)).
local function orthonormal_rows(m)
  local k = m:size(1)
  local q = av.zeros(m:size(), {dtype = "float64"})
  for i = 1, k do
    local v = m:select(1, i):clone()
    if i > 1 then
      local prev = q:narrow(1, 1, i - 1)
      for _ = 1, 2 do v = v - av.mv(prev:t(), av.mv(prev, v)) end
    end
    local norm = v:norm():item()
    if not (norm > 0) then error("nn.init.orthogonal_: the random matrix is rank deficient; try again", 0) end
    q:select(1, i):copy_(v / norm)
  end
  return q
end

--- orthogonal_(t, {gain=1}) -> t (2 or more dims)
function init.orthogonal_(t, ...)
  check_tensor("orthogonal_", t)
  local o = params("orthogonal_", {"gain"}, {gain = 1}, ...)
  check_number("orthogonal_", "gain", o.gain)
  if t:dim() < 2 then
    fail("nn.init.orthogonal_: only tensors with 2 or more dimensions are supported, got size %s", shape_str(t))
  end
  check_floating("orthogonal_", t)
  if t:numel() == 0 then return t end
  local rows = t:size(1)
  local cols = t:numel() // rows
  return no_grad(function()
    local q
    if rows < cols then
      q = orthonormal_rows(av.randn(rows, cols, {dtype = "float64"}))
    else
      q = orthonormal_rows(av.randn(cols, rows, {dtype = "float64"})):t()
    end
    return t:copy_(q:mul(o.gain):reshape(sizes(t)))
  end)
end

--- sparse_(t, sparsity, {std=0.01}) -> t (2-d)
function init.sparse_(t, ...)
  check_tensor("sparse_", t)
  local o = params("sparse_", {"sparsity", "std"}, {std = 0.01}, ...)
  check_number("sparse_", "sparsity", o.sparsity)
  check_number("sparse_", "std", o.std)
  if t:dim() ~= 2 then
    fail("nn.init.sparse_: only tensors with 2 dimensions are supported, got size %s", shape_str(t))
  end
  check_floating("sparse_", t)
  if not (o.std >= 0) then fail("nn.init.sparse_: expected std >= 0, got %s", o.std) end
  local rows, cols = t:size(1), t:size(2)
  local num_zeros = math.max(0, math.min(rows, math.ceil(o.sparsity * rows)))
  return no_grad(function()
    t:normal_(0, o.std)
    if num_zeros > 0 and cols > 0 then
      -- the num_zeros smallest of a uniform draw per column: a uniformly
      -- random set of distinct rows, as torch's randperm(rows)[:num_zeros]
      local _, idx = av.rand(rows, cols, {dtype = "float64"}):topk(num_zeros, 1, false)
      t:scatter_(1, idx, av.zeros(num_zeros, cols, {dtype = t:dtype()}))
    end
    return t
  end)
end

------------------------------------------------------------------------------

local names = {}
for k in pairs(init) do if k:sub(1, 1) ~= "_" then names[#names + 1] = k end end
table.sort(names)

setmetatable(init, {
  __index = function(_, k)
    error(("aviary.nn.init has no function '%s' (did you mean '%s'?)"):format(
      tostring(k), nearest(tostring(k), names)), 2)
  end,
})

return init
