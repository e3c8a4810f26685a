-- The CUDA core against the CPU on the same inputs, op family by op family
-- (ggml's test-backend-ops style): copies and dtype conversions, fills,
-- elementwise binary/unary ops with broadcasting and strided operands,
-- activations, clamp/where, reductions, indexing, random streams, and the
-- gradients of all of these through autograd. Errors are ‖gpu - cpu‖ / ‖cpu‖
-- in float64 over the finite elements (NaN and inf positions must agree);
-- integer results must be equal.
-- Skips without a CUDA device. AVIARY_CUDA_TEST_ON_CPU=1 runs the same file
-- CPU against CPU (checks the harness on a machine without a GPU; half-type
-- cases skip then).
-- usage: aviary tests/lua/runner.lua tests/gpu/test_cuda_core.lua
local av = require "aviary"

local ON_CPU = os.getenv("AVIARY_CUDA_TEST_ON_CPU") == "1"
local DEV = ON_CPU and "cpu" or "cuda"
local function gpu()
  if not ON_CPU and not av.cuda.is_available() then skip("no CUDA device") end
end
local function half_math()
  if ON_CPU then skip("half-type arithmetic needs the GPU") end
end
local function dev(x) return x:to(DEV) end

-- relative error thresholds by result dtype
local TOL = {float32 = 1e-5, float64 = 1e-12, float16 = 2e-3, bfloat16 = 1.6e-2}
local FLOATS = {float32 = true, float64 = true, float16 = true, bfloat16 = true}

local function finite_relerr(got, ref)
  local x, y = got:cpu():double(), ref:cpu():double()
  assert.same(x:size(), y:size(), "shape")
  if x:numel() == 0 then return 0 end
  local nx, ny = x:isnan(), y:isnan()
  assert.equal(nx:ne(ny):sum():item(), 0, "NaN positions differ")
  local ix, iy = x:isinf(), y:isinf()
  assert.equal(ix:ne(iy):sum():item(), 0, "inf positions differ")
  local m = x:isfinite()
  local zero = av.zeros(1, {dtype = "float64"})
  local xs, ys = av.where(m, x, zero), av.where(m, y, zero)
  assert.equal(av.where(ix, x, zero):ne(av.where(iy, y, zero)):sum():item(), 0, "inf signs differ")
  local den = ys:norm():item()
  local num = (xs - ys):norm():item()
  return den == 0 and num or num / den
end

-- got (device) against ref (CPU): same dtype unless allowed, values within tol
local function close(what, got, ref, tol, o)
  o = o or {}
  if not o.any_dtype then assert.equal(got:dtype(), ref:dtype(), what .. ": dtype") end
  if not ON_CPU and not o.any_device then assert.equal(got:device():sub(1, 4), "cuda", what .. ": device") end
  local dt = got:dtype()
  if not FLOATS[dt] and not FLOATS[ref:dtype()] then
    assert.same(got:cpu():tolist(), ref:tolist(), what)
    return
  end
  tol = tol or TOL[dt] or 0
  local e = finite_relerr(got, ref)
  assert.truthy(e <= tol, ("%s: relative error %.3g above %.3g"):format(what, e, tol))
end

-- Runs fn on the CPU inputs and on device copies; compares every result and,
-- with o.grad, the gradients of the floating inputs through a fixed random
-- weighting of the first result. o.half = 'float16'/'bfloat16': the device
-- side runs in that dtype, the CPU side in float32 on the same rounded values.
local function check(name, fn, inputs, o)
  o = o or {}
  local cpu_in, dev_in = {}, {}
  for i, x in ipairs(inputs) do
    if av.is_tensor(x) then
      if o.half and x:dtype() == "float32" then x = x:to(o.half):float() end
      cpu_in[i] = x:clone()
      local d = dev(o.half and FLOATS[x:dtype()] and x:to(o.half) or x)
      dev_in[i] = d
      if o.grad and FLOATS[x:dtype()] then
        cpu_in[i]:requires_grad_(true)
        dev_in[i] = d:detach():requires_grad_(true)
      end
    else
      cpu_in[i], dev_in[i] = x, x
    end
  end
  local n = #inputs
  local ref = table.pack(fn(table.unpack(cpu_in, 1, n)))
  local got = table.pack(fn(table.unpack(dev_in, 1, n)))
  assert.equal(got.n, ref.n, name .. ": result count")
  local tol = o.tol or (o.half and TOL[o.half])
  for k = 1, ref.n do
    if av.is_tensor(ref[k]) then close(("%s [%d]"):format(name, k), got[k], ref[k], tol, {any_dtype = o.half})
    else assert.equal(got[k], ref[k], name) end
  end
  if o.grad then
    av.manual_seed(1234)
    local w = av.randn(table.unpack(ref[1]:size())):to(ref[1]:dtype())
    local wd = dev(o.half and w:to(o.half) or w)
    if ref[1]:dim() == 0 then w, wd = w:view({}), wd:view({}) end
    (ref[1] * w):sum():backward()
    local go = got[1]
    if o.half then go = go:float(); wd = wd:float() end
    (go * wd):sum():backward()
    for i, x in ipairs(cpu_in) do
      if av.is_tensor(x) and x.requires_grad then
        assert.truthy(dev_in[i].grad ~= nil, name .. ": no gradient for input " .. i)
        close(("%s grad %d"):format(name, i), dev_in[i].grad, x.grad, o.gtol or tol, {any_dtype = o.half})
      end
    end
  end
end

local function randf(...) return av.randn(...) end
local function randi(lo, hi, shape, dt) return av.randint(lo, hi, shape, {dtype = dt}) end

av.manual_seed(0)

describe("copies and conversions", function()
  local DTYPES = {"float32", "float64", "int64", "int32", "uint8", "float16", "bfloat16"}
  it("every dtype to every dtype, contiguous and strided", function()
    gpu()
    -- values every dtype holds: non-negative (uint8), below 256, halves exactly representable in bf16
    local base = (av.rand(3, 4, 5) * 100):floor() / 2
    for _, s in ipairs(DTYPES) do
      local x = base:to(s)
      for _, d in ipairs(DTYPES) do
        check(("%s->%s"):format(s, d), function(t) return t:to(d) end, {x}, {tol = 0})
        check(("%s->%s strided"):format(s, d), function(t) return t:transpose(1, 3):to(d) end, {x}, {tol = 0})
      end
    end
  end)
  it("float32 to half types rounds to nearest even like the CPU", function()
    gpu()
    local x = randf(1000) * 1000
    for _, d in ipairs({"float16", "bfloat16"}) do
      check("f32->" .. d, function(t) return t:to(d) end, {x}, {tol = 0})
      check(d .. "->f32", function(t) return t:to(d):float() end, {x}, {tol = 0})
    end
  end)
  it("contiguous, clone and copy_ with broadcasting and conversion", function()
    gpu()
    local x = randf(4, 5, 6)
    check("contiguous permute", function(t) return t:permute({3, 1, 2}):contiguous() end, {x})
    check("clone narrow", function(t) return t:narrow(2, 2, 3):clone() end, {x})
    check("copy_ broadcast", function(t, r) local z = av.zeros_like(t); z:copy_(r); return z end,
          {x, randf(6)})
    check("copy_ into a strided view", function(t, r)
      local z = av.zeros_like(t); z:transpose(1, 2):copy_(r); return z end, {x, randf(5, 4, 6)})
    check("copy_ float64 into float32", function(t, r) local z = av.zeros_like(t); z:copy_(r); return z end,
          {x, randf(4, 5, 6):double()})
    check("expand then contiguous", function(t) return t:expand(3, 4, 6):contiguous() end, {randf(1, 4, 6)})
  end)
  it("copies across devices in both directions", function()
    gpu()
    local h = randf(7, 9)
    local d = dev(av.zeros(7, 9))
    d:copy_(h)
    close("host->device copy_", d, h)
    local back = av.zeros(9, 7)
    back:copy_(d:t())
    close("device->host copy_", back, h:t(), nil, {any_device = true})
    local i = av.zeros(7, 9, {dtype = "int32"})
    i:copy_(dev((h * 10):floor()))
    assert.same(i:tolist(), (h * 10):floor():int():tolist())
  end)
  it("fills", function()
    gpu()
    for _, dt in ipairs(DTYPES) do
      check("fill_ " .. dt, function(t) return av.zeros_like(t):fill_(3) end, {av.zeros(4, 5, {dtype = dt})}, {tol = 0})
      check("zero_ strided " .. dt, function(t)
        local z = av.ones_like(t); z:t():narrow(1, 2, 2):zero_(); return z end, {av.zeros(4, 5, {dtype = dt})}, {tol = 0})
      check("full_like " .. dt, function(t) return av.full_like(t, 7) end, {av.zeros(3, {dtype = dt})}, {tol = 0})
    end
  end)
end)

describe("elementwise binary", function()
  local ARITH = {"add", "sub", "mul", "maximum", "minimum"}
  local CMP = {"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor"}
  local function operands(dt)
    if dt == "float32" or dt == "float64" then
      local a, b = randf(3, 5, 7):to(dt), randf(3, 5, 7):to(dt)
      b[1][1] = a[1][1] -- a tie for maximum/minimum and comparisons
      return a, b
    end
    local lo = dt == "uint8" and 0 or -20
    return randi(lo, 20, {3, 5, 7}, dt), randi(lo, 20, {3, 5, 7}, dt)
  end
  it("arithmetic and comparisons for every dtype", function()
    gpu()
    for _, dt in ipairs({"float32", "float64", "int64", "int32", "uint8"}) do
      local a, b = operands(dt)
      for _, op in ipairs(ARITH) do check(op .. " " .. dt, function(x, y) return av[op](x, y) end, {a, b}) end
      for _, op in ipairs(CMP) do check(op .. " " .. dt, function(x, y) return av[op](x, y) end, {a, b}) end
    end
  end)
  it("division, remainder, pow and atan2", function()
    gpu()
    local a, b = randf(4, 6), randf(4, 6)
    check("div", function(x, y) return x / y end, {a, b})
    check("remainder float", function(x, y) return av.remainder(x, y) end, {a * 10, b})
    check("atan2", function(x, y) return av.atan2(x, y) end, {a, b})
    check("pow", function(x, y) return av.pow(x, y) end, {a:abs() + 0.1, b})
    check("pow square", function(x) return x ^ 2 end, {a})
    check("div int -> float", function(x, y) return x / y end, {randi(-9, 9, {5}, "int64"), randi(1, 9, {5}, "int64")})
    for _, dt in ipairs({"int64", "int32", "uint8"}) do
      local lo = dt == "uint8" and 0 or -30
      local x, y = randi(lo, 30, {40}, dt), randi(1, 7, {40}, dt)
      if dt ~= "uint8" then y = y * randi(0, 2, {40}, dt):mul(2):sub(1) end -- both signs of divisors
      check("remainder " .. dt, function(p, q) return av.remainder(p, q) end, {x, y})
      check("pow " .. dt, function(p, q) return av.pow(p, q) end, {randi(0, 5, {40}, dt), randi(0, 4, {40}, dt)})
    end
  end)
  it("broadcasting, strided operands and scalars", function()
    gpu()
    local a = randf(4, 1, 6)
    check("broadcast 4x1x6 + 5x1", function(x, y) return x + y end, {a, randf(5, 1)})
    check("row bias", function(x, y) return x + y end, {randf(64, 33), randf(33)})
    check("column scale", function(x, y) return x * y end, {randf(64, 33), randf(64, 1)})
    check("transposed operands", function(x, y) return x:t() - y end, {randf(6, 5), randf(5, 6)})
    check("narrowed operands", function(x, y) return x:narrow(2, 2, 3) * y:narrow(1, 1, 4) end, {randf(4, 5), randf(6, 3)})
    check("scalar right", function(x) return x * 2.5 end, {a})
    check("scalar left", function(x) return 1 - x end, {a})
    check("scalar int keeps int", function(x) return x * 3 end, {randi(-5, 5, {7}, "int32")})
    check("scalar float promotes int", function(x) return x * 0.5 end, {randi(-5, 5, {7}, "int32")})
    check("0-d CPU tensor operand", function(x) return x + av.tensor(1.5) end, {a})
    check("3-way where broadcast", function(c, x, y) return av.where(c, x, y) end,
          {randf(4, 1, 6):gt(0), randf(5, 1), randf(6)})
    check("large threaded add", function(x, y) return x + y end, {randf(1 << 20), randf(1 << 20)})
    check("int64 wraps", function(x) return x * x end, {av.tensor({3037000500, -3037000500, 7})})
  end)
  it("in place", function()
    gpu()
    check("add_", function(x, y) local z = x:clone(); z:add_(y); return z end, {randf(5, 6), randf(6)})
    check("mul_ scalar", function(x) local z = x:clone(); z:mul_(3); return z end, {randf(5, 6)})
    check("div_ transposed", function(x, y) local z = x:clone(); z:t():div_(y); return z end, {randf(5, 6), randf(6, 5)})
    check("sub_ int", function(x, y) local z = x:clone(); z:sub_(y); return z end,
          {randi(-9, 9, {8}, "int64"), randi(-9, 9, {8}, "int64")})
  end)
  it("half types compute in float", function()
    gpu(); half_math()
    for _, h in ipairs({"float16", "bfloat16"}) do
      local a, b = randf(8, 16), randf(16)
      for _, op in ipairs({"add", "sub", "mul", "maximum", "minimum"}) do
        check(op .. " " .. h, function(x, y) return av[op](x, y) end, {a, b}, {half = h})
      end
      check("div " .. h, function(x, y) return x / y end, {a, b:abs() + 0.5}, {half = h})
      check("gt " .. h, function(x, y) return x:gt(y) end, {a, b}, {half = h, tol = 0})
      check("scale " .. h, function(x) return x * 0.5 + 1 end, {a}, {half = h})
    end
  end)
  it("gradients through broadcasting", function()
    gpu()
    for _, op in ipairs({"add", "sub", "mul", "div", "maximum", "minimum"}) do
      check(op .. " grad", function(x, y) return av[op](x, y) end, {randf(4, 5), randf(5):abs() + 0.5}, {grad = true})
    end
    check("pow grad", function(x, y) return av.pow(x, y) end, {randf(4, 5):abs() + 0.5, randf(4, 5)}, {grad = true})
    check("where grad", function(c, x, y) return av.where(c, x, y) end, {randf(3, 4):gt(0), randf(3, 4), randf(4)},
          {grad = true})
  end)
end)

describe("elementwise unary", function()
  local ANY = {"neg", "exp", "abs", "sign", "floor", "ceil", "round", "trunc", "square", "sin", "cos", "tan",
               "expm1", "exp2", "sigmoid", "tanh", "relu", "erf"}
  local POS = {"log", "sqrt", "rsqrt", "reciprocal", "log2", "log10", "log1p"}
  it("float32 and float64", function()
    gpu()
    for _, dt in ipairs({"float32", "float64"}) do
      local x = (randf(6, 7) * 3):to(dt)
      local p = (av.rand(6, 7) * 5 + 0.01):to(dt)
      for _, op in ipairs(ANY) do check(op .. " " .. dt, function(t) return t[op](t) end, {x}) end
      for _, op in ipairs(POS) do check(op .. " " .. dt, function(t) return t[op](t) end, {p}) end
      check("round halves to even " .. dt, function(t) return t:round() end, {av.tensor({0.5, 1.5, 2.5, -0.5, -1.5}):to(dt)})
    end
  end)
  it("integer inputs", function()
    gpu()
    for _, dt in ipairs({"int64", "int32", "uint8"}) do
      local x = randi(dt == "uint8" and 0 or -9, 9, {30}, dt)
      for _, op in ipairs({"neg", "abs", "sign", "square", "relu", "floor", "round"}) do
        check(op .. " " .. dt, function(t) return t[op](t) end, {x})
      end
      check("sqrt promotes " .. dt, function(t) return t:abs():sqrt() end, {x})
    end
  end)
  it("predicates and NaN/inf", function()
    gpu()
    local x = av.tensor({1, -2, 0 / 0, 1 / 0, -1 / 0, 0, 3.5})
    for _, op in ipairs({"isnan", "isinf", "isfinite", "logical_not"}) do
      check(op, function(t) return t[op](t) end, {x})
    end
    check("relu keeps NaN", function(t) return t:relu() end, {x})
    check("sign of NaN", function(t) return t:sign() end, {x})
    check("maximum propagates NaN", function(t, u) return av.maximum(t, u) end, {x, av.zeros(7)})
  end)
  it("in place and strided", function()
    gpu()
    check("exp_ strided", function(t) local z = t:clone(); z:t():exp_(); return z end, {randf(5, 6)})
    check("sigmoid transposed", function(t) return t:t():sigmoid() end, {randf(5, 6)})
  end)
  it("half types", function()
    gpu(); half_math()
    for _, h in ipairs({"float16", "bfloat16"}) do
      for _, op in ipairs({"exp", "tanh", "sigmoid", "relu", "neg", "abs", "sin"}) do
        check(op .. " " .. h, function(t) return t[op](t) end, {randf(64)}, {half = h})
      end
    end
  end)
  it("gradients", function()
    gpu()
    for _, op in ipairs({"exp", "sin", "cos", "tanh", "sigmoid", "relu", "abs", "square", "erf", "neg"}) do
      check(op .. " grad", function(t) return t[op](t) end, {randf(5, 6)}, {grad = true})
    end
    for _, op in ipairs({"log", "sqrt", "rsqrt", "reciprocal"}) do
      check(op .. " grad", function(t) return t[op](t) end, {av.rand(5, 6) + 0.1}, {grad = true})
    end
  end)
  it("clamp", function()
    gpu()
    local x = randf(6, 7) * 3
    check("clamp both", function(t) return t:clamp(-1, 1) end, {x}, {grad = true})
    check("clamp min", function(t) return t:clamp({min = 0}) end, {x}, {grad = true})
    check("clamp int", function(t) return t:clamp(-3, 3) end, {randi(-9, 9, {20}, "int64")})
    check("clamp_", function(t) local z = t:clone(); z:clamp_(-0.5, 0.5); return z end, {x})
  end)
end)

describe("activations", function()
  local ACTS = {
    {"leaky_relu", {0.1}}, {"elu", {}}, {"gelu", {}}, {"gelu", {"tanh"}}, {"silu", {}}, {"hardswish", {}},
    {"hardsigmoid", {}}, {"relu6", {}}, {"softplus", {}}, {"softplus", {2, 1}},
  }
  it("forward and backward, float32 and float64", function()
    gpu()
    for _, dt in ipairs({"float32", "float64"}) do
      -- values around every branch point (0, +-3, 6, the softplus threshold)
      local x = (randf(8, 9) * 4):to(dt)
      x[1][1], x[1][2], x[1][3], x[1][4] = 0, 3, -3, 6
      for _, a in ipairs(ACTS) do
        local name, args = a[1], a[2]
        check(name .. " " .. dt, function(t) return av[name](t, table.unpack(args)) end, {x}, {grad = true})
      end
    end
  end)
  it("half types", function()
    gpu(); half_math()
    for _, h in ipairs({"float16", "bfloat16"}) do
      for _, a in ipairs(ACTS) do
        check(a[1] .. " " .. h, function(t) return av[a[1]](t, table.unpack(a[2])) end, {randf(64) * 3}, {half = h})
      end
    end
  end)
  it("dropout draws the CPU's mask", function()
    gpu()
    local x = randf(33, 17)
    av.manual_seed(77)
    local ref = av.dropout(x, {p = 0.3})
    av.manual_seed(77)
    local got = av.dropout(dev(x), {p = 0.3})
    close("dropout", got, ref)
    local xd = dev(x):requires_grad_(true)
    av.dropout(xd, {p = 1}):sum():backward()
    assert.equal(xd.grad:abs():sum():item(), 0)
  end)
end)

describe("reductions", function()
  local DIMS = {{}, {1}, {2}, {3}, {1, 3}, {-1}, {2, 3}}
  local function reduce(op, t, dims, keepdim)
    if #dims == 0 then return t[op](t) end
    return t[op](t, dims, {keepdim = keepdim})
  end
  it("sum, prod, max, min, all, any over every dim set, every dtype", function()
    gpu()
    for _, dt in ipairs({"float32", "float64", "int64", "int32", "uint8"}) do
      local x = FLOATS[dt] and randf(4, 5, 6):to(dt) or randi(dt == "uint8" and 0 or -3, 4, {4, 5, 6}, dt)
      for _, dims in ipairs(DIMS) do
        for _, keep in ipairs({false, true}) do
          local tag = ("%s %s dims {%s} keep=%s"):format("%s", dt, table.concat(dims, ","), tostring(keep))
          for _, op in ipairs({"sum", "prod", "amax", "amin", "all", "any"}) do
            -- the CPU multiplies float32 in float32, the GPU in float64: up to ~1e-5 apart over 120 factors
            check(tag:format(op), function(t) return reduce(op, t, dims, keep) end, {x},
                  {tol = op == "prod" and dt == "float32" and 1e-4 or nil})
          end
          if FLOATS[dt] then
            check(tag:format("mean"), function(t) return reduce("mean", t, dims, keep) end, {x})
          end
        end
      end
      check("sum transposed " .. dt, function(t) return t:transpose(1, 3):sum(2) end, {x})
    end
  end)
  it("max/min/argmax/argmin with indices: first occurrence wins ties, NaN wins", function()
    gpu()
    local x = (av.rand(6, 7, 8) * 4):floor() -- many ties
    for d = 1, 3 do
      check("max dim " .. d, function(t) return t:max(d) end, {x})
      check("min dim keepdim " .. d, function(t) return t:min(d, {keepdim = true}) end, {x})
      check("argmax dim " .. d, function(t) return t:argmax(d) end, {x})
      check("argmin dim " .. d, function(t) return t:argmin(d) end, {x})
    end
    check("argmax all", function(t) return t:argmax() end, {x})
    check("argmin all transposed", function(t) return t:transpose(1, 2):argmin() end, {x})
    local n = av.tensor({{1, 0 / 0, 3, 0 / 0}, {5, 4, 5, 2}})
    check("max NaN", function(t) return t:max(2) end, {n})
    check("amax NaN", function(t) return t:amax() end, {n})
    check("argmax NaN", function(t) return t:argmax(2) end, {n})
  end)
  it("large and lopsided shapes take every kernel path", function()
    gpu()
    -- positive values: a sum of signed values can cancel to near zero, making relative errors meaningless
    check("sum 4M", function(t) return t:sum() end, {av.rand(1 << 22)}, {tol = 1e-6})
    check("rows 3x100000", function(t) return t:sum(2) end, {av.rand(3, 100000)}, {tol = 1e-6})
    check("columns 4096 outputs", function(t) return t:sum(1) end, {av.rand(300, 4096)}, {tol = 1e-6})
    check("columns few outputs", function(t) return t:sum(1) end, {av.rand(100000, 3)}, {tol = 1e-6})
    check("batch-norm-like dims", function(t) return t:sum({1, 3, 4}) end, {av.rand(8, 16, 12, 12)}, {tol = 1e-6})
    check("short rows, many outputs", function(t) return t:amax(2) end, {randf(5000, 7)})
    -- chunked folds: ties across chunks still go to the first occurrence
    check("argmax of a long vector with ties", function(t) return t:argmax() end, {(av.rand(300000) * 50):floor()})
    check("max of 2 long rows", function(t) return t:max(2) end, {(av.rand(2, 300000) * 50):floor()})
    check("any/all of a long vector", function(t) return t:gt(0.9999):any(), t:lt(2):all() end, {av.rand(300000)})
    check("mean of a long column", function(t) return t:mean(1) end, {av.rand(70000, 2)}, {tol = 1e-6})
    check("argmax rows", function(t) return t:argmax(2) end, {randf(1000, 1000)})
    check("empty dim sum", function(t) return t:sum(1) end, {av.zeros(0, 5)})
  end)
  it("var, std, norm, logsumexp", function()
    gpu()
    local x = randf(5, 6, 7)
    for _, dims in ipairs({{}, {1}, {3}, {1, 3}}) do
      local tag = table.concat(dims, ",")
      check("var " .. tag, function(t) return #dims == 0 and t:var() or t:var(dims) end, {x})
      check("std " .. tag, function(t) return #dims == 0 and t:std() or t:std(dims, {correction = 0}) end, {x})
      check("norm " .. tag, function(t) return #dims == 0 and t:norm() or t:norm(2, dims) end, {x})
    end
    check("norm 1", function(t) return t:norm(1) end, {x})
    check("norm inf", function(t) return t:norm(1 / 0) end, {x})
    check("logsumexp", function(t) return t:logsumexp(2) end, {x})
  end)
  it("half types accumulate in float", function()
    gpu(); half_math()
    for _, h in ipairs({"float16", "bfloat16"}) do
      check("sum " .. h, function(t) return t:sum(2) end, {randf(8, 300)}, {half = h})
      check("mean " .. h, function(t) return t:mean() end, {randf(1000)}, {half = h})
      check("amax " .. h, function(t) return t:amax(1) end, {randf(50, 8)}, {half = h})
      check("argmax " .. h, function(t) return t:argmax(2) end, {randf(8, 50)}, {half = h})
    end
  end)
  it("gradients", function()
    gpu()
    local x = randf(4, 5, 6)
    check("sum grad", function(t) return t:sum({1, 3}) end, {x}, {grad = true})
    check("mean grad", function(t) return t:mean(2) end, {x}, {grad = true})
    check("amax grad", function(t) return t:amax(3) end, {x}, {grad = true})
    check("max dim grad", function(t) return t:max(2) end, {x}, {grad = true})
    check("prod grad", function(t) return t:prod(1) end, {x}, {grad = true})
    check("var grad", function(t) return t:var(3) end, {x}, {grad = true})
    check("std grad", function(t) return t:std() end, {x}, {grad = true})
    check("norm grad", function(t) return t:norm(2, {2}) end, {x}, {grad = true})
    check("logsumexp grad", function(t) return t:logsumexp(1) end, {x}, {grad = true})
  end)
end)

describe("indexing", function()
  it("index_select and gather", function()
    gpu()
    local x = randf(5, 6, 7)
    for d = 1, 3 do
      local idx = av.tensor({1, 3, 3, 2})
      check("index_select dim " .. d, function(t, i) return t:index_select(d, i) end, {x, idx}, {grad = true})
      check("index_select int32 dim " .. d, function(t, i) return t:index_select(d, i) end, {x, idx:int()})
    end
    check("index_select from a table", function(t) return t:index_select(2, {2, 1}) end, {x})
    check("index_select uint8 data", function(t, i) return t:index_select(1, i) end,
          {randi(0, 200, {4, 3}, "uint8"), av.tensor({4, 1})})
    local gi = av.randint(1, 6, {5, 6, 7})
    check("gather dim 2", function(t, i) return t:gather(2, i) end, {x, gi}, {grad = true})
    check("gather dim 3 narrow index", function(t, i) return t:gather(3, i:narrow(3, 1, 2)) end, {x, gi:clamp(1, 7)})
  end)
  it("scatter, scatter_add, masked_fill, masked_select, nonzero", function()
    gpu()
    local base = randf(4, 6)
    -- distinct targets per column for plain scatter: repeated ones would leave an arbitrary winner on the GPU
    local perm = av.stack({av.tensor({3, 1, 4, 2}), av.tensor({2, 4, 1, 3}), av.tensor({1, 2, 3, 4})}, 2)
    check("scatter", function(t, i, s) return t:scatter(1, i, s) end, {base:narrow(2, 1, 3), perm, randf(4, 3)})
    check("scatter value", function(t, i) return t:scatter(1, i, 9.5) end, {base:narrow(2, 1, 3), perm})
    local dup = av.randint(1, 5, {10, 6})
    check("scatter add", function(t, i, s) return t:scatter(1, i, s, {reduce = "add"}) end,
          {base, dup, randf(10, 6)}, {tol = 1e-6})
    check("scatter add int64", function(t, i, s) return t:scatter(1, i, s, "add") end,
          {randi(-5, 5, {4, 6}, "int64"), dup, randi(-5, 5, {10, 6}, "int64")})
    check("scatter_ add in place", function(t, i, s) local z = t:clone(); z:scatter_(1, i, s, "add"); return z end,
          {base, dup, randf(10, 6)}, {tol = 1e-6})
    local m = randf(4, 6):gt(0)
    check("masked_fill", function(t, k) return t:masked_fill(k, -7) end, {base, m}, {grad = true})
    check("masked_fill broadcast mask", function(t, k) return t:masked_fill(k, 1.5) end, {base, randf(6):gt(0)})
    check("masked_fill_", function(t, k) local z = t:clone(); z:masked_fill_(k, 0); return z end, {base, m})
    check("masked_select", function(t, k) return t:masked_select(k) end, {base, m})
    check("nonzero", function(t) return t:nonzero() end, {m})
  end)
  it("cat and stack", function()
    gpu()
    local a, b, c = randf(2, 3, 4), randf(2, 5, 4), randf(2, 1, 4)
    check("cat dim 2", function(x, y, z) return av.cat({x, y, z}, 2) end, {a, b, c}, {grad = true})
    check("cat dim 1 strided", function(x, y) return av.cat({x:transpose(1, 2), y:transpose(1, 2)}, 1) end,
          {a, randf(2, 3, 4)})
    check("cat promotes", function(x, y) return av.cat({x, y}, 1) end, {randf(2, 3), randi(0, 9, {1, 3}, "int64")})
    check("stack dim 3", function(x, y) return av.stack({x, y}, 3) end, {a, randf(2, 3, 4)}, {grad = true})
  end)
  it("views and padding", function()
    gpu()
    local x = randf(2, 3, 4, 5)
    check("permute contiguous", function(t) return t:permute({4, 2, 1, 3}):contiguous() end, {x}, {grad = true})
    check("select narrow", function(t) return t:select(2, 2):narrow(3, 2, 3) * 2 end, {x}, {grad = true})
    check("reshape of a transposed view", function(t) return t:transpose(2, 4):reshape(2, -1) end, {x}, {grad = true})
    check("pad constant", function(t) return av.pad(t, {1, 2, 3, 0}, "constant", 0.5) end, {x}, {grad = true})
  end)
end)

describe("random streams", function()
  it("uniform_ and normal_ on the device draw the CPU's numbers", function()
    gpu()
    for _, dt in ipairs({"float32", "float64"}) do
      for _, n in ipairs({1, 7, 1000}) do
        av.manual_seed(42)
        local ref = av.empty(n, {dtype = dt}):uniform_(-2, 3)
        av.manual_seed(42)
        local got = dev(av.empty(n, {dtype = dt})):uniform_(-2, 3)
        close(("uniform_ %s n=%d"):format(dt, n), got, ref, 0)
        av.manual_seed(43)
        ref = av.empty(n, {dtype = dt}):normal_(1, 2)
        av.manual_seed(43)
        got = dev(av.empty(n, {dtype = dt})):normal_(1, 2)
        close(("normal_ %s n=%d"):format(dt, n), got, ref, dt == "float64" and 1e-13 or 1e-6)
      end
    end
    -- a strided target fills in row-major order of its logical elements
    av.manual_seed(5)
    local ref = av.empty(6, 4):t():uniform_()
    local ref_next = av.empty(9):uniform_()
    av.manual_seed(5)
    local got = dev(av.empty(6, 4)):t():uniform_()
    local got_next = dev(av.empty(9)):uniform_()
    close("uniform_ strided", got, ref, 0)
    -- and the generator advances the same way: the next draw matches too
    close("uniform_ after", got_next, ref_next, 0)
  end)
  it("rand_like and randn_like follow their input's device", function()
    gpu()
    local x = dev(av.zeros(3, 4))
    assert.equal(av.rand_like(x):device(), x:device())
    assert.equal(av.randn_like(x):device(), x:device())
    assert.equal(av.zeros_like(x):device(), x:device())
  end)
end)

describe("autograd on the device", function()
  it("a small network's loss and every gradient", function()
    gpu()
    local x, w1, b1, w2 = randf(8, 5), randf(5, 6), randf(6), randf(6, 3)
    local function net(xx, ww1, bb1, ww2)
      -- matmul-free: broadcasting products and sums stand in for the linear layers
      local h = (xx:unsqueeze(3) * ww1:unsqueeze(1)):sum(2) + bb1
      h = av.gelu(h):clamp(-2, 2)
      local o = (h:unsqueeze(3) * ww2:unsqueeze(1)):sum(2)
      local m = o:amax(2, {keepdim = true})
      return ((o - m):exp():sum(2):log() + m:squeeze(2) - o:select(2, 1)):mean()
    end
    check("network", net, {x, w1, b1, w2}, {grad = true, tol = 1e-5})
  end)
  it("gradients accumulate on the device across backward calls", function()
    gpu()
    local w = dev(randf(4)):requires_grad_(true)
    for _ = 1, 3 do (w * 2):sum():backward() end
    assert.equal(w.grad:device(), w:device())
    close("accumulated", w.grad, av.full({4}, 6.0), 0)
  end)
end)

describe("ops that run on the host for device tensors", function()
  it("sort, topk, cumsum, cumprod, interpolate and reflection padding", function()
    gpu()
    local x = randf(4, 9)
    check("sort", function(t) return t:sort(2) end, {x})
    check("sort descending", function(t) return t:sort(1, {descending = true}) end, {x})
    check("topk", function(t) return t:topk(3, 2) end, {x}, {grad = true})
    check("cumsum", function(t) return t:cumsum(2) end, {x}, {grad = true})
    check("cumprod", function(t) return t:cumprod(1) end, {x})
    check("interpolate", function(t) return av.interpolate(t, {8, 10}, {mode = "bilinear"}) end,
          {randf(2, 3, 4, 5)}, {grad = true})
    check("pad reflect", function(t) return av.pad(t, {2, 1}, "reflect") end, {randf(2, 3, 6)}, {grad = true})
  end)
end)

describe("errors on the device", function()
  it("bad indices fail before any kernel runs, naming the index", function()
    gpu()
    local x = dev(randf(4, 5))
    assert.error_matches(function() x:index_select(1, dev(av.tensor({1, 9}))) end, "index 9 is out of range")
    assert.error_matches(function() x:gather(2, dev(av.tensor({{6}, {1}, {1}, {1}}))) end, "out of range")
    if not ON_CPU then
      assert.error_matches(function() return x + av.ones(4, 5) end, "expected all tensors on one device")
    end
  end)
end)

-- AVIARY_CUDA_PERF=1: memory-bound throughput of the core kernels (ggml's perf mode), printed, not checked
describe("perf", function()
  it("elementwise, copy and reduction bandwidth", function()
    gpu()
    if os.getenv("AVIARY_CUDA_PERF") ~= "1" then skip("set AVIARY_CUDA_PERF=1") end
    local side = tonumber(os.getenv("AVIARY_CUDA_PERF_SIDE") or "") or 8192 -- square matrices of side^2 floats
    local n = side * side
    local a, b = dev(av.rand(n)), dev(av.rand(n))
    local m, row = a:view(side, side), b:narrow(1, 1, side)
    local function time(name, bytes, fn)
      fn()
      av.cuda.synchronize()
      local reps, t0 = 20, av.clock()
      for _ = 1, reps do fn() end
      av.cuda.synchronize()
      local dt = (av.clock() - t0) / reps
      print(("# perf %-24s n=%-9d %8.3f ms  %7.1f GB/s"):format(name, n, dt * 1e3, bytes / dt / 1e9))
    end
    time("add f32", 12 * n, function() return a + b end)
    time("mul scalar f32", 8 * n, function() return a * 2 end)
    time("add row-broadcast", 8 * n, function() return m + row end)
    time("transpose copy", 8 * n, function() return m:t():contiguous() end)
    time("to float16", 6 * n, function() return a:half() end)
    time("sum all", 4 * n, function() return a:sum() end)
    time("sum rows", 4 * n, function() return m:sum(2) end)
    time("sum columns", 4 * n, function() return m:sum(1) end)
    time("argmax rows", 4 * n, function() return m:argmax(2) end)
    time("relu", 8 * n, function() return a:relu() end)
    time("gelu", 8 * n, function() return av.gelu(a) end)
  end)
end)
