-- aviary.nn.init against torch.nn.init: gains and fans exactly, the bounds
-- and statistics of the random inits (aviary's generator draws other values
-- than torch's), the deterministic fills element for element, orthogonality,
-- reproducibility under av.manual_seed, in-place filling without autograd
-- recording, and the errors for bad input. The PyTorch cases are recorded
-- next to the tests they belong to and run together at the end.
local av = require "aviary"
local init = require "aviary.nn.init"
local parity = require "parity"

av.manual_seed(4321)

local function f32(x) return av.tensor(x):item() end -- x rounded to float32
local function num(t) return t:double():item() end
local function pyshape(s) return "(" .. table.concat(s, ", ") .. (#s == 1 and ",)" or ")") end
local function pystr(v)
  if type(v) == "string" then return "'" .. v .. "'" end
  if math.type(v) == "float" then return ("%.17g"):format(v) end
  return tostring(v)
end
local function has_nan(t) return num(t:isnan():any()) ~= 0 end

-- fan_in, fan_out written out from torch's definition
local function fans_of(s)
  local r = 1
  for i = 3, #s do r = r * s[i] end
  return s[2] * r, s[1] * r
end

-- Phi and phi for the truncated normal moments
local function Phi(x) return (1 + num(av.tensor(x / math.sqrt(2), {dtype = "float64"}):erf())) / 2 end
local function phi(x) return math.exp(-x * x / 2) / math.sqrt(2 * math.pi) end
local function trunc_moments(mean, std, a, b)
  local al, be = (a - mean) / std, (b - mean) / std
  local z = Phi(be) - Phi(al)
  local d = (phi(al) - phi(be)) / z
  local var = std ^ 2 * (1 + (al * phi(al) - be * phi(be)) / z - d ^ 2)
  return mean + std * d, math.sqrt(var)
end

------------------------------------------------------------------------------
describe("calculate_gain", function()
  local cases = {
    {"linear"}, {"conv1d"}, {"conv2d"}, {"conv3d"}, {"conv_transpose1d"}, {"conv_transpose2d"},
    {"conv_transpose3d"}, {"sigmoid"}, {"tanh"}, {"relu"}, {"selu"}, {"leaky_relu"}, {"leaky_relu", 0.2},
    {"leaky_relu", 0}, {"leaky_relu", math.sqrt(5)}, {"relu", 3}, {"tanh", 0.5},
  }
  it("has torch's values", function()
    assert.equal(init.calculate_gain("linear"), 1)
    assert.equal(init.calculate_gain("conv2d"), 1)
    assert.equal(init.calculate_gain("sigmoid"), 1)
    assert.equal(init.calculate_gain("tanh"), 5 / 3)
    assert.equal(init.calculate_gain("relu"), math.sqrt(2))
    assert.equal(init.calculate_gain("selu"), 0.75)
    assert.equal(init.calculate_gain("leaky_relu"), math.sqrt(2 / (1 + 0.01 ^ 2)))
    assert.equal(init.calculate_gain("leaky_relu", 0.2), math.sqrt(2 / 1.04))
    assert.equal(init.calculate_gain("leaky_relu", 0), math.sqrt(2))
  end)
  for _, c in ipairs(cases) do
    local args = pystr(c[1]) .. (c[2] ~= nil and (", " .. pystr(c[2])) or "")
    parity.check("calculate_gain(" .. args .. ")",
      ("torch.tensor(torch.nn.init.calculate_gain(%s), dtype=torch.float64)"):format(args), {},
      av.tensor(init.calculate_gain(c[1], c[2]), {dtype = "float64"}), {tol = 1e-15})
  end
end)

------------------------------------------------------------------------------
describe("fan_in_and_fan_out", function()
  local shapes = {{3, 5}, {5, 3}, {7, 4, 3}, {8, 4, 3, 3}, {6, 2, 1, 2, 3}, {16, 3, 5, 7}, {0, 3}, {4, 0, 3, 3}}
  it("follows torch's definition", function()
    for _, s in ipairs(shapes) do
      local fi, fo = init.fan_in_and_fan_out(av.empty(s))
      local efi, efo = fans_of(s)
      assert.equal(fi, efi, "fan_in of " .. table.concat(s, "x"))
      assert.equal(fo, efo, "fan_out of " .. table.concat(s, "x"))
    end
    assert.equal(init._calculate_fan_in_and_fan_out, init.fan_in_and_fan_out)
  end)
  for _, s in ipairs(shapes) do
    local x = av.zeros(s)
    local fi, fo = init.fan_in_and_fan_out(x)
    parity.check("fans of " .. table.concat(s, "x"),
      "torch.tensor(torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(x.shape)))", {x = x},
      av.tensor({fi, fo}), {tol = 0})
  end
  it("needs 2 or more dims, like torch", function()
    assert.error_matches(function() init.fan_in_and_fan_out(av.zeros(5)) end, "fewer than 2 dimensions")
    assert.error_matches(function() init.fan_in_and_fan_out(av.tensor(1.5)) end, "fewer than 2 dimensions")
    assert.error_matches(function() init.xavier_uniform_(av.zeros(5)) end, "xavier_uniform_: fan in and fan out")
    assert.error_matches(function() init.kaiming_normal_(av.zeros(5)) end, "fewer than 2 dimensions")
  end)
end)

------------------------------------------------------------------------------
-- uniform inits: each case is the function, its arguments, the torch call
-- (keyword form) and the bound from the formula in torch's documentation.
local big = {128, 64, 3, 3} -- 73728 elements: max |x| within ~1e-4 of the bound
local function kaiming_bound(s, a, mode, nl)
  local fi, fo = fans_of(s)
  local fan = mode == "fan_out" and fo or fi
  local gain = nl == "leaky_relu" and math.sqrt(2 / (1 + a * a)) or
    ({relu = math.sqrt(2), tanh = 5 / 3, linear = 1, selu = 0.75, sigmoid = 1})[nl]
  return gain * math.sqrt(3 / fan)
end
local uniform_cases = {
  {"uniform_ default", function(t) return init.uniform_(t) end, "torch.nn.init.uniform_(t)", 0, 1},
  {"uniform_(-0.3, 0.7)", function(t) return init.uniform_(t, -0.3, 0.7) end,
    "torch.nn.init.uniform_(t, a=-0.3, b=0.7)", -0.3, 0.7},
  {"uniform_ {a=-2, b=-1}", function(t) return init.uniform_(t, {a = -2, b = -1}) end,
    "torch.nn.init.uniform_(t, a=-2, b=-1)", -2, -1},
}
local sym_cases = {
  {"xavier_uniform_", function(t) return init.xavier_uniform_(t) end, "torch.nn.init.xavier_uniform_(t)",
    function(s) local fi, fo = fans_of(s); return math.sqrt(6 / (fi + fo)) end},
  {"xavier_uniform_ gain=relu", function(t) return init.xavier_uniform_(t, {gain = init.calculate_gain("relu")}) end,
    "torch.nn.init.xavier_uniform_(t, gain=math.sqrt(2))",
    function(s) local fi, fo = fans_of(s); return math.sqrt(2) * math.sqrt(6 / (fi + fo)) end},
  {"kaiming_uniform_ default", function(t) return init.kaiming_uniform_(t) end, "torch.nn.init.kaiming_uniform_(t)",
    function(s) return kaiming_bound(s, 0, "fan_in", "leaky_relu") end},
  {"kaiming_uniform_ a=sqrt(5)", function(t) return init.kaiming_uniform_(t, math.sqrt(5)) end,
    "torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))",
    function(s) return kaiming_bound(s, math.sqrt(5), "fan_in", "leaky_relu") end},
  {"kaiming_uniform_ fan_out relu", function(t) return init.kaiming_uniform_(t, {mode = "fan_out", nonlinearity = "relu"}) end,
    "torch.nn.init.kaiming_uniform_(t, mode='fan_out', nonlinearity='relu')",
    function(s) return kaiming_bound(s, 0, "fan_out", "relu") end},
  {"kaiming_uniform_ a=0.2 fan_out", function(t) return init.kaiming_uniform_(t, 0.2, "fan_out") end,
    "torch.nn.init.kaiming_uniform_(t, a=0.2, mode='fan_out')",
    function(s) return kaiming_bound(s, 0.2, "fan_out", "leaky_relu") end},
  {"kaiming_uniform_ tanh", function(t) return init.kaiming_uniform_(t, {nonlinearity = "tanh"}) end,
    "torch.nn.init.kaiming_uniform_(t, nonlinearity='tanh')",
    function(s) return kaiming_bound(s, 0, "fan_in", "tanh") end},
}

describe("uniform inits: bounds", function()
  for _, c in ipairs(uniform_cases) do
    local name, fn, expr, lo, hi = c[1], c[2], c[3], c[4], c[5]
    local x = fn(av.empty(big))
    it(name .. " stays in [a, b) and reaches both ends", function()
      local mn, mx = num(x:min()), num(x:max())
      assert.truthy(mn >= f32(lo) and mx <= f32(hi), ("range [%g, %g] outside [%g, %g]"):format(mn, mx, lo, hi))
      assert.truthy(mn - lo < 1e-3 * (hi - lo) and hi - mx < 1e-3 * (hi - lo),
        ("range [%g, %g] does not reach [%g, %g]"):format(mn, mx, lo, hi))
      assert.near(num(x:mean()), (lo + hi) / 2, 0.01 * (hi - lo), "mean")
    end)
    -- torch's own draws reach the same ends
    parity.check(name .. ": torch's min and max", ("(lambda t: torch.stack([t.min(), t.max()]))(%s)"):format(
      expr:gsub("%(t", "(torch.empty(s.tolist())", 1)), {s = av.tensor(big)},
      av.tensor({lo, hi}, {dtype = "float32"}), {tol = 1e-3 * (hi - lo) / (1 + math.max(math.abs(lo), math.abs(hi)))})
  end
  for _, c in ipairs(sym_cases) do
    local name, fn, expr, bound_of = c[1], c[2], c[3], c[4]
    for _, s in ipairs({big, {300, 250}}) do
      local label = ("%s %s"):format(name, table.concat(s, "x"))
      local bound = bound_of(s)
      local x = fn(av.empty(s))
      it(label .. ": max |x| <= bound, close to it", function()
        local m = num(x:abs():max())
        assert.truthy(m <= f32(bound), ("max |x| = %.9g > bound %.9g"):format(m, bound))
        assert.truthy(m >= bound * (1 - 1e-3), ("max |x| = %.9g far below bound %.9g"):format(m, bound))
        assert.near(num(x:double():mean()), 0, 0.01 * bound, "mean")
        assert.near(num(x:double():std()) / (bound / math.sqrt(3)), 1, 0.03, "std / (bound / sqrt 3)")
      end)
      -- torch's draws have the same bound: its max |x| over ours is 1
      parity.check(label .. ": torch's max |x| / bound", ("%s.abs().max().double() / bnd"):format(
        expr:gsub("%(t", "(torch.empty(s.tolist())", 1)),
        {s = av.tensor(s), bnd = av.tensor(bound, {dtype = "float64"})},
        av.tensor(1.0, {dtype = "float64"}), {tol = 5e-4})
    end
  end
end)

------------------------------------------------------------------------------
local normal_cases = {
  {"normal_ default", function(t) return init.normal_(t) end, "torch.nn.init.normal_(t)", 0, function() return 1 end},
  {"normal_(0.5, 0.02)", function(t) return init.normal_(t, 0.5, 0.02) end, "torch.nn.init.normal_(t, 0.5, 0.02)", 0.5,
    function() return 0.02 end},
  {"normal_ {std=3}", function(t) return init.normal_(t, {std = 3}) end, "torch.nn.init.normal_(t, std=3)", 0,
    function() return 3 end},
  {"xavier_normal_", function(t) return init.xavier_normal_(t) end, "torch.nn.init.xavier_normal_(t)", 0,
    function(s) local fi, fo = fans_of(s); return math.sqrt(2 / (fi + fo)) end},
  {"xavier_normal_ gain=5/3", function(t) return init.xavier_normal_(t, 5 / 3) end,
    "torch.nn.init.xavier_normal_(t, gain=5/3)", 0,
    function(s) local fi, fo = fans_of(s); return 5 / 3 * math.sqrt(2 / (fi + fo)) end},
  {"kaiming_normal_ default", function(t) return init.kaiming_normal_(t) end, "torch.nn.init.kaiming_normal_(t)", 0,
    function(s) return kaiming_bound(s, 0, "fan_in", "leaky_relu") / math.sqrt(3) end},
  {"kaiming_normal_ fan_out relu", function(t) return init.kaiming_normal_(t, {mode = "fan_out", nonlinearity = "relu"}) end,
    "torch.nn.init.kaiming_normal_(t, mode='fan_out', nonlinearity='relu')", 0,
    function(s) return kaiming_bound(s, 0, "fan_out", "relu") / math.sqrt(3) end},
  {"kaiming_normal_ a=0.1 FAN_OUT selu", function(t) return init.kaiming_normal_(t, 0.1, "FAN_OUT", "selu") end,
    "torch.nn.init.kaiming_normal_(t, a=0.1, mode='fan_out', nonlinearity='selu')", 0,
    function(s) return kaiming_bound(s, 0, "fan_out", "selu") / math.sqrt(3) end},
}

describe("normal inits: statistics", function()
  for _, c in ipairs(normal_cases) do
    local name, fn, expr, mean, std_of = c[1], c[2], c[3], c[4], c[5]
    for _, s in ipairs({big, {400, 300}}) do
      local label = ("%s %s"):format(name, table.concat(s, "x"))
      local std = std_of(s)
      local x = fn(av.empty(s)):double()
      it(label .. ": std within 3% of the formula, mean right", function()
        assert.near(num(x:std()) / std, 1, 0.03, "std / formula")
        assert.near(num(x:mean()), mean, 0.02 * std, "mean")
        -- normal, not uniform: a few samples beyond 3.5 std, none beyond 7
        local z = (x - mean) / std
        local far = num(z:abs():gt(3.5):sum())
        assert.truthy(far > 0 and num(z:abs():max()) < 7, "tails of a normal distribution")
      end)
      parity.check(label .. ": torch's std / formula", ("(lambda t: torch.stack([(t.mean() - m) / sd / 2, t.std() / sd]).double())(%s)")
        :format((expr:gsub("%(t", "(torch.empty(s.tolist())", 1))),
        {s = av.tensor(s), m = av.tensor(mean), sd = av.tensor(std, {dtype = "float64"})},
        av.tensor({0, 1}, {dtype = "float64"}), {tol = 0.015})
    end
  end
end)

------------------------------------------------------------------------------
describe("trunc_normal_", function()
  local cases = {
    {{}, "", 0, 1, -2, 2},
    {{mean = 0.5, std = 2, a = -1, b = 3}, "mean=0.5, std=2.0, a=-1.0, b=3.0", 0.5, 2, -1, 3},
    {{std = 0.02}, "std=0.02", 0, 0.02, -2, 2},  -- the ViT use: bounds far out, a plain normal
    {{mean = 0, std = 1, a = 1, b = 1.5}, "a=1.0, b=1.5", 0, 1, 1, 1.5},
    {{a = -0.5, b = 0.5, std = 0.1, mean = 0.45}, "mean=0.45, std=0.1, a=-0.5, b=0.5", 0.45, 0.1, -0.5, 0.5},
  }
  local n = 200000
  for _, c in ipairs(cases) do
    local opts, kw, mean, std, a, b = c[1], c[2], c[3], c[4], c[5], c[6]
    local label = ("(%s)"):format(kw)
    local em, es = trunc_moments(mean, std, a, b)
    for _, dtype in ipairs({"float32", "float64"}) do
      it(label .. " " .. dtype .. ": bounds and moments", function()
        local x = init.trunc_normal_(av.empty(n, {dtype = dtype}), opts)
        assert.equal(x:dtype(), dtype)
        local mn, mx = num(x:min()), num(x:max())
        assert.truthy(mn >= f32(a) - 1e-7 * math.abs(a) and mx <= f32(b) + 1e-7 * math.abs(b),
          ("range [%g, %g] outside [%g, %g]"):format(mn, mx, a, b))
        -- the sample reaches an end when the density there is not negligible
        local lo_mass = Phi((math.min(a + 0.01 * (b - a), b) - mean) / std) - Phi((a - mean) / std)
        if lo_mass * n > 50 then assert.truthy(mn < a + 0.01 * (b - a), "reaches a") end
        local hi_mass = Phi((b - mean) / std) - Phi((math.max(b - 0.01 * (b - a), a) - mean) / std)
        if hi_mass * n > 50 then assert.truthy(mx > b - 0.01 * (b - a), "reaches b") end
        assert.near(num(x:double():mean()), em, 0.015 * es, "mean")
        assert.near(num(x:double():std()) / es, 1, 0.01, "std / formula")
      end)
    end
    -- torch's own draws (a million, float64) have the same moments
    parity.check(label .. ": torch's moments", ("(lambda t: torch.stack([(t.mean() - em) / es, t.std() / es, (t.min() >= a).double(), (t.max() <= b).double()]))(torch.nn.init.trunc_normal_(torch.empty(1000000, dtype=torch.float64)%s))")
      :format(kw == "" and "" or (", " .. kw)),
      {em = av.tensor(em, {dtype = "float64"}), es = av.tensor(es, {dtype = "float64"}),
       a = av.tensor(a, {dtype = "float64"}), b = av.tensor(b, {dtype = "float64"})},
      av.tensor({0, 1, 1, 1}, {dtype = "float64"}), {tol = 0.005})
  end
  -- the inverse error function it uses, against torch.erfinv in float64
  local y = av.linspace(-0.99999, 0.99999, 2001, {dtype = "float64"})
  parity.check("erfinv in float64", "torch.erfinv(y)", {y = y}, init._erfinv(y), {tol = 1e-12})
  -- near +-1 torch's erfinv (Newton steps on erf) is itself off by up to 1e-4
  local tails = av.tensor({-1, 1, -(1 - 1e-7), 1 - 1e-9, 1 - 1e-12, 1 - 2 ^ -52, 0, 1e-300, -1e-10, 1.5, -2},
    {dtype = "float64"})
  parity.check("erfinv tails and ends", "torch.erfinv(y)", {y = tails}, init._erfinv(tails), {tol = 1e-4})
  it("erfinv near +-1 is accurate (references from mpmath at 40 digits)", function()
    local y = av.tensor({1 - 1e-7, 1 - 1.01e-9, 1 - 0.99e-9, 1 - 1e-10, -(1 - 1e-12), 1 - 2 ^ -52}, {dtype = "float64"})
    local ref = {3.7665625816384707, 4.318882248275922, 4.321139533710183, 4.572824958544925, -5.042031898572696,
                 5.805018683193453}
    assert.tensor_near(init._erfinv(y), ref, 1e-9)
    assert.tensor_near(init._erfinv(y:view(2, 3)), av.tensor(ref, {dtype = "float64"}):view(2, 3), 1e-9, "any shape")
  end)
  it("is the plain normal when the bounds are far out", function()
    local x = init.trunc_normal_(av.empty(100000), {std = 0.02}):double()
    assert.near(num(x:std()), 0.02, 0.02 * 0.02)
    assert.truthy(num(x:abs():max()) < 0.2)
  end)
  it("a == b gives that value", function()
    local x = init.trunc_normal_(av.empty(10, {dtype = "float64"}), {a = 0.25, b = 0.25})
    assert.tensor_near(x, av.full({10}, 0.25, {dtype = "float64"}), 1e-12)
  end)
  it("keeps infinite bounds open", function()
    local x = init.trunc_normal_(av.empty(100000), {a = -math.huge, b = math.huge, std = 2}):double()
    assert.falsy(has_nan(x))
    assert.near(num(x:std()) / 2, 1, 0.02)
  end)
end)

------------------------------------------------------------------------------
describe("deterministic fills equal torch's", function()
  local function torch_fill(call, s, dtype)
    return ("torch.nn.init.%s(torch.empty(%s, dtype=x.dtype)%s)"):format(call[1], pyshape(s), call[2] or "")
  end
  local cases = {
    {"eye_", {3, 5}}, {"eye_", {5, 3}}, {"eye_", {4, 4}}, {"eye_", {0, 3}}, {"eye_", {4, 4}, dtype = "float64"},
    {"eye_", {2, 3}, dtype = "int64"},
    {"dirac_", {4, 2, 3}}, {"dirac_", {4, 2, 3}, {{groups = 2}}, ", groups=2"}, {"dirac_", {5, 3, 4, 4}},
    {"dirac_", {6, 3, 3, 3}, {{groups = 3}}, ", groups=3"}, {"dirac_", {4, 4, 5, 5}, {{groups = 2}}, ", groups=2"},
    {"dirac_", {3, 5, 2, 4}}, {"dirac_", {2, 4, 3, 3, 3}}, {"dirac_", {4, 2, 2, 3, 1}, {{groups = 2}}, ", groups=2"},
    {"dirac_", {6, 4, 3, 3}, {{groups = 2}}, ", groups=2", dtype = "float64"}, {"dirac_", {4, 2, 3, 3}, {2}, ", 2"},
    {"constant_", {3, 4}, {0.3}, ", 0.3"}, {"constant_", {2, 3, 4}, {-7.25}, ", -7.25", dtype = "float64"},
    {"constant_", {5}, {3}, ", 3", dtype = "int64"},
    {"ones_", {3, 4}}, {"zeros_", {3, 4, 2}}, {"ones_", {0}},
  }
  for _, c in ipairs(cases) do
    local fname, s, args, pyargs = c[1], c[2], c[3] or {}, c[4]
    local dtype = c.dtype or "float32"
    local mine = init[fname](av.full(s, 9, {dtype = dtype}), table.unpack(args))
    parity.check(("%s %s %s%s"):format(fname, table.concat(s, "x"), dtype, pyargs or ""),
      torch_fill({fname, pyargs}, s, dtype), {x = av.zeros(1, {dtype = dtype})}, mine, {tol = 0})
  end
  it("dirac_ keeps a convolution's input", function()
    local w = init.dirac_(av.empty(3, 3, 3, 3))
    local x = av.randn(2, 3, 6, 5)
    assert.tensor_near(av.conv2d(x, w, nil, {padding = 1}), x, 1e-6)
  end)
end)

------------------------------------------------------------------------------
describe("orthogonal_ and sparse_", function()
  local function check_orthogonal(t, gain, label)
    local s = t:size()
    local rows = s[1]
    local q = t:double():reshape(rows, -1)
    local cols = q:size(2)
    local g
    if rows >= cols then g = av.mm(q:t(), q) else g = av.mm(q, q:t()) end
    local k = math.min(rows, cols)
    local err = num((g - av.eye(k, {dtype = "float64"}) * (gain * gain)):abs():max())
    assert.truthy(err < 1e-5 * gain * gain, ("%s: |Q^T Q - gain^2 I| = %g"):format(label, err))
  end
  for _, c in ipairs({{{5, 3}, 1}, {{3, 5}, 1}, {{64, 64}, 1}, {{100, 30}, 2}, {{30, 100}, 0.5},
                      {{8, 4, 3, 3}, math.sqrt(2)}, {{40, 3, 2, 2}, 1}, {{1, 7}, 1}, {{7, 1}, 3}}) do
    local s, gain = c[1], c[2]
    local label = ("%s gain %g"):format(table.concat(s, "x"), gain)
    it(label .. ": Q^T Q = gain^2 I", function()
      local t = init.orthogonal_(av.empty(s), gain ~= 1 and {gain = gain} or nil)
      assert.same(t:size(), s)
      check_orthogonal(t, gain, label)
    end)
  end
  it("float64 to 1e-12, positional gain, non-contiguous target", function()
    local t = init.orthogonal_(av.empty(50, 20, {dtype = "float64"}), 1.5)
    local g = av.mm(t:t(), t)
    assert.truthy(num((g - av.eye(20, {dtype = "float64"}) * 2.25):abs():max()) < 1e-12)
    local base = av.zeros(6, 9)
    local r = init.orthogonal_(base:t())
    assert.truthy(num(av.mm(r:t(), r):sub(av.eye(6)):abs():max()) < 1e-5)
    check_orthogonal(base:t():contiguous(), 1, "base")
  end)
  it("is not biased: the mean of many square draws is near 0", function()
    local acc = av.zeros(4, 4, {dtype = "float64"})
    for _ = 1, 400 do acc:add_(init.orthogonal_(av.empty(4, 4, {dtype = "float64"}))) end
    -- each entry has variance 1/4; the mean of 400 has std 0.025
    assert.truthy(num((acc / 400):abs():max()) < 0.15)
  end)
  it("leaves an empty tensor alone", function()
    assert.same(init.orthogonal_(av.empty(0, 4)):size(), {0, 4})
  end)
  it("sparse_: ceil(sparsity * rows) zeros in every column, N(0, std) elsewhere", function()
    local rows, cols = 200, 300
    local t = init.sparse_(av.empty(rows, cols), 0.1)
    local zeros = t:eq(0):sum(1)
    assert.tensor_near(zeros, av.full({cols}, 20), 0)
    local nz = t:masked_select(t:ne(0)):double()
    assert.near(num(nz:std()) / 0.01, 1, 0.03)
    local t2 = init.sparse_(av.empty(10, 50), 0.25, {std = 2})
    assert.tensor_near(t2:eq(0):sum(1), av.full({50}, 3), 0)
    assert.near(num(t2:masked_select(t2:ne(0)):double():std()) / 2, 1, 0.15)
    assert.tensor_near(init.sparse_(av.empty(4, 3), 0):eq(0):sum(1), av.zeros(3), 0)
    assert.tensor_near(init.sparse_(av.empty(4, 3), 1.5):eq(0):sum(1), av.full({3}, 4), 0)
  end)
  -- torch agrees on the number of zeros per column
  parity.check("sparse_ zeros per column", "(torch.nn.init.sparse_(torch.empty(200, 300), 0.1) == 0).sum(0)", {},
    init.sparse_(av.empty(200, 300), 0.1):eq(0):sum(1), {tol = 0})
end)

------------------------------------------------------------------------------
local random_inits = {
  {"uniform_", function(t) return init.uniform_(t, -1, 2) end},
  {"normal_", function(t) return init.normal_(t, 1, 0.5) end},
  {"trunc_normal_", function(t) return init.trunc_normal_(t, {std = 0.5}) end},
  {"xavier_uniform_", init.xavier_uniform_},
  {"xavier_normal_", init.xavier_normal_},
  {"kaiming_uniform_", function(t) return init.kaiming_uniform_(t, {a = math.sqrt(5)}) end},
  {"kaiming_normal_", function(t) return init.kaiming_normal_(t, {mode = "fan_out", nonlinearity = "relu"}) end},
  {"orthogonal_", init.orthogonal_},
  {"sparse_", function(t) return init.sparse_(t, 0.3) end},
}
local fixed_inits = {
  {"constant_", function(t) return init.constant_(t, 0.5) end},
  {"ones_", init.ones_}, {"zeros_", init.zeros_}, {"eye_", init.eye_},
}

describe("seeds", function()
  for _, c in ipairs(random_inits) do
    it(c[1] .. " repeats under av.manual_seed and differs without it", function()
      av.manual_seed(99)
      local a = c[2](av.empty(12, 9)):clone()
      av.manual_seed(99)
      local b = c[2](av.empty(12, 9))
      assert.tensor_near(b, a, 0)
      local d = c[2](av.empty(12, 9))
      assert.truthy(num((d - a):abs():max()) > 0, "a second draw differs")
    end)
  end
  it("positional and option forms draw the same values", function()
    av.manual_seed(5)
    local a = init.kaiming_uniform_(av.empty(6, 5), math.sqrt(5), "fan_out")
    av.manual_seed(5)
    local b = init.kaiming_uniform_(av.empty(6, 5), {a = math.sqrt(5), mode = "fan_out"})
    av.manual_seed(5)
    local c = init.kaiming_uniform_(av.empty(6, 5), math.sqrt(5), {mode = "fan_out"})
    assert.tensor_near(b, a, 0)
    assert.tensor_near(c, a, 0)
    av.manual_seed(6)
    local u1 = init.trunc_normal_(av.empty(50), 0.1, 2, -1, 1)
    av.manual_seed(6)
    local u2 = init.trunc_normal_(av.empty(50), {mean = 0.1, std = 2, a = -1, b = 1})
    assert.tensor_near(u2, u1, 0)
  end)
end)

------------------------------------------------------------------------------
describe("in place, without autograd", function()
  local all = {}
  for _, c in ipairs(random_inits) do all[#all + 1] = c end
  for _, c in ipairs(fixed_inits) do all[#all + 1] = c end
  all[#all + 1] = {"dirac_", init.dirac_, {4, 3, 3}}
  for _, c in ipairs(all) do
    local name, fn, shape = c[1], c[2], c[3] or {8, 6}
    it(name .. " fills the tensor's own storage and returns it", function()
      local t = av.full(shape, 0 / 0)
      local view = t:view(-1)
      local r = fn(t)
      assert.truthy(rawequal(r, t), "returns its argument")
      assert.falsy(has_nan(t), "every element written")
      assert.falsy(has_nan(view), "written through the storage a view shares")
      -- a non-contiguous view writes into its base, and only there
      local base = av.full({shape[1], shape[2] * 2}, 0 / 0)
      local cols = base:narrow(2, 1, shape[2])
      if #shape == 2 then
        local rv = fn(cols)
        assert.truthy(rawequal(rv, cols))
        assert.falsy(has_nan(base:narrow(2, 1, shape[2])), "view filled")
        assert.truthy(num(base:narrow(2, shape[2] + 1, shape[2]):isnan():all()) == 1, "rest untouched")
      end
    end)
    it(name .. " records no graph on a tensor that requires grad", function()
      local w = av.empty(shape):requires_grad_(true)
      local r = fn(w)
      assert.truthy(rawequal(r, w))
      assert.truthy(w.requires_grad, "still requires grad")
      assert.truthy(w.is_leaf, "still a leaf")
      assert.equal(w.grad_fn, nil)
      assert.truthy(av.is_grad_enabled(), "grad mode restored")
      local loss = (w * w):sum()
      loss:backward()
      assert.tensor_near(w.grad, w:detach() * 2, 1e-6)
    end)
  end
  it("restores grad mode after an error", function()
    assert.has_error(function() init.eye_(av.empty(2, 2, 2):requires_grad_(true)) end)
    -- this one fails inside the no_grad block (the destination shares memory)
    assert.error_matches(function() init.constant_(av.zeros(3, 1):expand(3, 4), 1) end, "expanded")
    assert.truthy(av.is_grad_enabled())
    local prev = av.is_grad_enabled()
    av.no_grad(function()
      init.normal_(av.empty(3))
      assert.falsy(av.is_grad_enabled(), "still off inside no_grad")
    end)
    assert.equal(av.is_grad_enabled(), prev)
  end)
  it("random inits keep the dtype; half precision is filled too", function()
    for _, dt in ipairs({"float64", "float16", "bfloat16"}) do
      local t = av.full({6, 5}, 0 / 0, {dtype = dt})
      init.kaiming_uniform_(t)
      assert.equal(t:dtype(), dt)
      assert.falsy(has_nan(t:float()))
      init.trunc_normal_(t, {std = 0.1})
      assert.truthy(num(t:float():abs():max()) <= 2)
      init.orthogonal_(t)
      assert.truthy(num(av.mm(t:double():t(), t:double()):sub(av.eye(5, {dtype = "float64"})):abs():max()) < 5e-2)
    end
  end)
  it("empty tensors are left alone", function()
    for _, fn in ipairs({init.kaiming_uniform_, init.kaiming_normal_, init.xavier_uniform_, init.trunc_normal_,
                         init.uniform_, init.normal_, init.orthogonal_}) do
      assert.same(fn(av.empty(0, 3)):size(), {0, 3})
    end
    -- kaiming_*, like torch, before looking at the dims
    assert.same(init.kaiming_uniform_(av.empty(0)):size(), {0})
    assert.same(init.kaiming_normal_(av.empty(0), {mode = "fan_out"}):size(), {0})
    assert.error_matches(function() init.kaiming_uniform_(av.empty(0), {mode = "out"}) end, "not supported")
  end)
end)

------------------------------------------------------------------------------
describe("bad input", function()
  local names = {"uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                 "sparse_", "fan_in_and_fan_out"}
  it("a non-tensor is named", function()
    for _, n in ipairs(names) do
      assert.error_matches(function() init[n](3, 1) end, "nn.init." .. n .. ": expected a tensor as argument 1, got number")
      assert.error_matches(function() init[n]({1, 2}) end, "expected a tensor as argument 1, got table")
      assert.error_matches(function() init[n]() end, "expected a tensor as argument 1, got nil")
    end
  end)
  it("unknown option names suggest the nearest", function()
    local w = av.empty(4, 3)
    assert.error_matches(function() init.kaiming_uniform_(w, {mdoe = "fan_in"}) end, "unknown option 'mdoe' (did you mean 'mode'?)")
    assert.error_matches(function() init.kaiming_normal_(w, {nonlinarity = "relu"}) end, "did you mean 'nonlinearity'?")
    assert.error_matches(function() init.xavier_uniform_(w, {gian = 2}) end, "unknown option 'gian' (did you mean 'gain'?)")
    assert.error_matches(function() init.trunc_normal_(w, {stdd = 2}) end, "did you mean 'std'?")
    assert.error_matches(function() init.trunc_normal_(w, {men = 2}) end, "did you mean 'mean'?")
    assert.error_matches(function() init.uniform_(w, {lo = 1}) end, "unknown option 'lo'")
    assert.error_matches(function() init.dirac_(av.empty(2, 2, 3), {group = 2}) end, "did you mean 'groups'?")
    assert.error_matches(function() init.orthogonal_(w, {gains = 2}) end, "did you mean 'gain'?")
    assert.error_matches(function() init.sparse_(w, 0.1, {sdt = 2}) end, "did you mean 'std'?")
    assert.error_matches(function() init.ones_(w, {value = 2}) end, "unknown option 'value' (it takes no options)")
    assert.error_matches(function() init.uniform_(w, {[1] = 2}) end, "option names must be strings")
  end)
  it("misspelt function names suggest the nearest", function()
    assert.error_matches(function() return init.xavier_uniform end, "no function 'xavier_uniform' (did you mean 'xavier_uniform_'?)")
    assert.error_matches(function() return init.kaiming_uniformm_ end, "did you mean 'kaiming_uniform_'?")
  end)
  it("wrong mode or nonlinearity names the valid choices", function()
    local w = av.empty(4, 3)
    assert.error_matches(function() init.kaiming_uniform_(w, {mode = "fanin"}) end,
      "mode 'fanin' not supported (did you mean 'fan_in'? valid: 'fan_in', 'fan_out')")
    assert.error_matches(function() init.kaiming_normal_(w, 0, "in") end, "valid: 'fan_in', 'fan_out'")
    assert.error_matches(function() init.kaiming_normal_(w, {mode = 1}) end, "mode must be a string")
    assert.error_matches(function() init.kaiming_uniform_(w, {nonlinearity = "rellu"}) end,
      "unsupported nonlinearity 'rellu' (did you mean 'relu'? valid: linear, conv1d")
    assert.error_matches(function() init.kaiming_uniform_(w, {nonlinearity = "gelu"}) end, "leaky_relu, selu")
    assert.error_matches(function() init.calculate_gain("softmax") end, "calculate_gain: unsupported nonlinearity 'softmax'")
    assert.error_matches(function() init.calculate_gain() end, "nonlinearity must be a string")
    assert.error_matches(function() init.calculate_gain("leaky_relu", "0.2") end, "negative_slope 0.2 not a valid number")
    assert.error_matches(function() init.calculate_gain("leaky_relu", true) end, "not a valid number")
  end)
  it("wrong shapes, dtypes and values", function()
    assert.error_matches(function() init.eye_(av.empty(2, 2, 2)) end, "eye_: only tensors with 2 dimensions are supported, got size 2x2x2")
    assert.error_matches(function() init.dirac_(av.empty(2, 2)) end, "only tensors with 3, 4, or 5 dimensions")
    assert.error_matches(function() init.dirac_(av.empty(2, 2, 2, 2, 2, 2)) end, "3, 4, or 5 dimensions")
    assert.error_matches(function() init.dirac_(av.empty(5, 2, 3), {groups = 2}) end, "must be divisible by groups")
    assert.error_matches(function() init.dirac_(av.empty(4, 2, 3), {groups = 0}) end, "groups must be positive")
    assert.error_matches(function() init.dirac_(av.empty(4, 2, 3), 1.5) end, "groups must be an integer")
    assert.error_matches(function() init.dirac_(av.empty(4, 2, 3), {groups = "2"}) end, "groups must be an integer")
    assert.error_matches(function() init.dirac_(av.empty(4, 2, 3), math.huge) end, "groups must be an integer")
    assert.error_matches(function() init.orthogonal_(av.empty(5)) end, "2 or more dimensions")
    assert.error_matches(function() init.sparse_(av.empty(5, 2, 2), 0.1) end, "only tensors with 2 dimensions")
    assert.error_matches(function() init.sparse_(av.empty(5, 2)) end, "'sparsity' is required")
    assert.error_matches(function() init.constant_(av.empty(5, 2)) end, "'val' is required")
    assert.error_matches(function() init.constant_(av.empty(5, 2), "1") end, "val must be a number, got string")
    assert.error_matches(function() init.uniform_(av.empty(3), 2, 1) end, "expected a <= b")
    assert.error_matches(function() init.uniform_(av.empty(3), "0") end, "a must be a number")
    assert.error_matches(function() init.normal_(av.empty(3), 0, -1) end, "expected std >= 0")
    assert.error_matches(function() init.trunc_normal_(av.empty(3), {std = 0}) end, "expected std > 0")
    assert.error_matches(function() init.trunc_normal_(av.empty(3), {a = 1, b = 0}) end, "expected a <= b")
    assert.error_matches(function() init.uniform_(av.empty(3), 0, 1, 2) end, "at most 2 arguments after the tensor (a, b), got 3")
    assert.error_matches(function() init.ones_(av.empty(3), 1) end, "at most 0 arguments")
    assert.error_matches(function() init.uniform_(av.empty(3), 0, {a = 1}) end, "'a' is given both as an argument and as an option")
    assert.error_matches(function() init.xavier_uniform_(av.empty(3, 3), "2") end, "gain must be a number")
    for _, n in ipairs({"uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "kaiming_normal_", "orthogonal_"}) do
      assert.error_matches(function() init[n](av.zeros(3, 3, {dtype = "int64"})) end,
        "nn.init." .. n .. ": expected a floating point tensor, got int64")
    end
  end)
  it("errors point at the caller's line", function()
    local ok, err = pcall(function() init.kaiming_uniform_(av.empty(2, 2), {mode = "x"}) end)
    assert.falsy(ok)
    assert.truthy(tostring(err):find("test_init.lua:%d+:"), tostring(err))
    ok, err = pcall(function() init.uniform_(42) end)
    assert.truthy(tostring(err):find("test_init.lua:%d+:"), tostring(err))
  end)
end)

------------------------------------------------------------------------------
-- the torch side of every parity.check above, in one python3 process
describe("PyTorch parity", function()
  parity.run()
end)
