-- Joining and indexing from Lua: argument forms, 1-based dims and indices
-- both ways, index tables, errors, then every op against PyTorch on
-- non-contiguous inputs of every dtype and on sizes that take the threaded paths.
local av = require "aviary"
local parity = require "parity"

av.manual_seed(777)

local function m23() return av.tensor({{1, 2, 3}, {4, 5, 6}}) end

describe("cat and stack", function()
  it("module and method forms, default and negative dims", function()
    local a, b = m23(), av.tensor({{7}, {8}})
    assert.tensor_near(av.cat({a, a}), {{1, 2, 3}, {4, 5, 6}, {1, 2, 3}, {4, 5, 6}})
    assert.tensor_near(av.cat({a, b}, 2), {{1, 2, 3, 7}, {4, 5, 6, 8}})
    assert.tensor_near(av.cat({a, b}, -1), {{1, 2, 3, 7}, {4, 5, 6, 8}})
    assert.tensor_near(a:cat(b, 2), {{1, 2, 3, 7}, {4, 5, 6, 8}})
    assert.tensor_near(a:cat({b, b}, 2), {{1, 2, 3, 7, 7}, {4, 5, 6, 8, 8}})
    assert.same(a:cat(a):size(), {4, 3})
    assert.equal(av.cat({a}):numel(), 6)
  end)
  it("promotes dtypes and skips legacy empty 1-d tensors", function()
    local i, f = av.tensor({1, 2}):int(), av.tensor({0.5})
    local r = av.cat({av.empty(0), i, f})
    assert.equal(r:dtype(), "float32")
    assert.tensor_near(r, {1, 2, 0.5})
    assert.same(av.cat({av.empty(0), m23(), av.empty(0)}):size(), {2, 3})
    assert.equal(av.cat({av.zeros(2):half(), av.zeros(1):half()}):dtype(), "float16")
  end)
  it("stack inserts a new dim", function()
    local a = m23()
    assert.same(av.stack({a, a}):size(), {2, 2, 3})
    assert.same(av.stack({a, a}, 2):size(), {2, 2, 3})
    assert.same(av.stack({a, a, a}, 3):size(), {2, 3, 3})
    assert.same(av.stack({a, a, a}, -1):size(), {2, 3, 3})
    assert.tensor_near(av.stack({a, a * 10}, 3)[2], {{4, 40}, {5, 50}, {6, 60}})
    assert.tensor_near(av.stack({av.tensor(1), av.tensor(2)}), {1, 2})
  end)
  it("errors name both shapes and the list position", function()
    local a = m23()
    assert.error_matches(function() return av.cat({a, av.zeros(3, 3)}, 2) end,
      "aviary.cat: sizes must match except in dimension 2, but tensor 1 has size 2x3 and tensor 2 has size 3x3")
    assert.error_matches(function() return av.cat({a, av.zeros(3)}) end, "tensor 2 of size 3 has 1 dimensions but tensor 1 of size 2x3 has 2")
    assert.error_matches(function() return av.cat({a, 3}) end, "entry 2 of the list in argument 1 is not a tensor (got number)")
    assert.error_matches(function() return av.cat({}) end, "non-empty list")
    assert.error_matches(function() return av.cat(a) end, "expected a tensor or a list of tensors to join as argument 2, got nil")
    assert.error_matches(function() return av.stack(a) end, "expected a list of tensors as argument 1, got a tensor")
    assert.error_matches(function() return av.cat({a, a}, 3) end, "dimension 3 out of range for a 2-d tensor")
    assert.error_matches(function() return av.cat({a, a}, 0) end, "dimensions are 1-based")
    assert.error_matches(function() return av.cat({av.tensor(1), av.tensor(2)}) end, "0-d")
    assert.error_matches(function() return a:cat(a, 1, 2) end, "too many arguments")
    assert.error_matches(function() return av.stack({a, a:t()}) end,
      "aviary.stack: all tensors need the same size, but tensor 1 has size 2x3 and tensor 2 has size 3x2")
    assert.error_matches(function() return av.stack({a, a}, 4) end, "dimension 4 out of range for a 3-d tensor")
  end)
end)

describe("index_select and gather", function()
  it("index_select takes 1-based tables and tensors of int64 or int32", function()
    local a = m23()
    assert.tensor_near(a:index_select(2, {3, 1, 3}), {{3, 1, 3}, {6, 4, 6}})
    assert.tensor_near(av.index_select(a, 1, av.tensor({2})), {{4, 5, 6}})
    assert.tensor_near(a:index_select(-1, av.tensor({2, 2}):int()), {{2, 2}, {5, 5}})
    assert.tensor_near(a:t():index_select(1, {3}), {{3, 6}})
    assert.same(a:index_select(1, {}):size(), {0, 3})
    assert.equal(a:float():index_select(1, {1}):dtype(), "float32")
  end)
  it("index_select errors report 1-based indices", function()
    local a = m23()
    assert.error_matches(function() return a:index_select(2, {1, 4}) end,
      "Tensor:index_select: index 4 is out of range for dimension 2 of size 3")
    assert.error_matches(function() return a:index_select(1, {0}) end, "index 0 is out of range for dimension 1 of size 2")
    assert.error_matches(function() return a:index_select(1, av.tensor({1.0})) end, "must be an integer tensor")
    assert.error_matches(function() return a:index_select(1, {1.5}) end, "must be an integer")
    assert.error_matches(function() return a:index_select(1, av.tensor({{1}})) end, "index must be 1-d")
    assert.error_matches(function() return a:index_select(1, "x") end, "index tensor or a table of integers")
  end)
  it("gather with nested tables and tensors", function()
    local a = m23()
    assert.tensor_near(a:gather(2, {{3, 1}, {2, 2}}), {{3, 1}, {5, 5}})
    assert.tensor_near(av.gather(a, 1, av.tensor({{2, 1, 2}})), {{4, 2, 6}})
    assert.tensor_near(a:gather(2, {{1, 1, 1, 1}}), {{1, 1, 1, 1}})
    assert.equal(a:double():gather(1, {{1}}):dtype(), "float64")
  end)
  it("gather errors", function()
    local a = m23()
    assert.error_matches(function() return a:gather(2, {{4}}) end, "Tensor:gather: index 4 is out of range for dimension 2 of size 3")
    assert.error_matches(function() return a:gather(2, {{1}, {1}, {1}}) end,
      "index of size 3x1 is larger than the input of size 2x3 in dimension 1 (only dimension 2 may be larger)")
    assert.error_matches(function() return a:gather(2, {1, 2}) end, "index of size 2 has 1 dimensions but the input of size 2x3 has 2")
    assert.error_matches(function() return a:gather(3, {{1}}) end, "dimension 3 out of range")
  end)
end)

describe("scatter", function()
  it("out of place, in place, reductions, a number as the source", function()
    local x = av.zeros(2, 4)
    local r = x:scatter(2, {{4, 1}, {2, 3}}, av.tensor({{1, 2, 9}, {3, 4, 9}}):float())
    assert.tensor_near(r, {{2, 0, 0, 1}, {0, 3, 4, 0}})
    assert.tensor_near(x, {{0, 0, 0, 0}, {0, 0, 0, 0}})
    assert.tensor_near(av.scatter(x, 2, {{1, 1, 1}}, av.ones(1, 3), {reduce = "add"}), {{3, 0, 0, 0}, {0, 0, 0, 0}})
    local y = av.full({2, 2}, 2)
    assert.tensor_near(y:scatter(1, {{2, 2}}, av.full({1, 2}, 5), "multiply"), {{2, 2}, {10, 10}})
    local same = x:scatter_(1, {{2, 1, 2, 1}}, 7)
    assert.equal(same, x)
    assert.tensor_near(x, {{0, 7, 0, 7}, {7, 0, 7, 0}})
    x:scatter_(2, av.tensor({{1}, {1}}), 1.5, {reduce = "add"})
    assert.tensor_near(x, {{1.5, 7, 0, 7}, {8.5, 0, 7, 0}})
  end)
  it("one-hot encoding of 1-based labels", function()
    local labels = av.tensor({3, 1, 2, 3})
    local onehot = av.zeros(4, 3):scatter_(2, labels:view(4, 1), 1)
    assert.tensor_near(onehot, {{0, 0, 1}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}})
    assert.tensor_near(onehot:nonzero():select(2, 2), {3, 1, 2, 3})
  end)
  it("errors", function()
    local x = av.zeros(2, 3)
    assert.error_matches(function() return x:scatter(2, {{4}}, 1) end, "Tensor:scatter: index 4 is out of range for dimension 2 of size 3")
    assert.error_matches(function() return x:scatter_(2, {{1}}, 1, {reduce = "max"}) end,
      "Tensor:scatter_: reduce must be \"add\" or \"multiply\"")
    assert.error_matches(function() return x:scatter(2, {{1}}, av.ones(1, 1):double()) end,
      "src has dtype float64 but the tensor scattered into has dtype float32")
    assert.error_matches(function() return x:scatter(2, {{1, 2}}, av.ones(1, 1)) end,
      "index of size 1x2 is larger than src of size 1x1 in dimension 2")
    assert.error_matches(function() return x:scatter(2, {{1}}, "a") end, "source tensor or a number")
    assert.error_matches(function() return av.zeros(1, 3):expand(2, 3):scatter_(1, {{1}}, 1) end, "expanded")
  end)
end)

describe("masks and nonzero", function()
  it("masked_fill, masked_fill_, masked_select", function()
    local a = m23():float()
    assert.tensor_near(a:masked_fill(a:gt(3), -1), {{1, 2, 3}, {-1, -1, -1}})
    assert.tensor_near(av.masked_fill(a, av.tensor({true, false, true}), 0), {{0, 2, 0}, {0, 5, 0}})
    assert.tensor_near(a:masked_fill(a:eq(2), av.tensor(9)), {{1, 9, 3}, {4, 5, 6}})
    assert.tensor_near(a:masked_fill(a:eq(2), true), {{1, 1, 3}, {4, 5, 6}})
    local same = a:masked_fill_(a:lt(2), 0)
    assert.equal(same, a)
    assert.tensor_near(a, {{0, 2, 3}, {4, 5, 6}})
    assert.tensor_near(a:masked_select(a:gt(2)), {3, 4, 5, 6})
    assert.tensor_near(av.masked_select(a, av.tensor({{1}, {0}}):byte()), {0, 2, 3})
    assert.same(a:masked_select(a:gt(100)):size(), {0})
  end)
  it("nonzero gives 1-based int64 coordinates", function()
    local x = av.tensor({{0, 3, 0}, {1, 0, 2}})
    local nz = x:nonzero()
    assert.equal(nz:dtype(), "int64")
    assert.tensor_near(nz, {{1, 2}, {2, 1}, {2, 3}})
    assert.tensor_near(av.nonzero(av.tensor({0, 0, 5})), {{3}})
    assert.same(av.nonzero(av.zeros(3)):size(), {0, 1})
    assert.same(av.tensor(2):nonzero():size(), {1, 0})
  end)
  it("errors", function()
    local a = m23():float()
    assert.error_matches(function() return a:masked_fill(a, 1) end, "Tensor:masked_fill: mask must be a uint8 tensor (0 or 1), got float32")
    assert.error_matches(function() return a:masked_fill_(av.ones(2, 2, 3):byte(), 1) end,
      "Tensor:masked_fill_: mask of size 2x2x3 does not broadcast to the tensor's size 2x3")
    assert.error_matches(function() return a:masked_fill(a:gt(1), "x") end, "expected a number as the fill value")
    assert.error_matches(function() return a:masked_fill(a:gt(1), av.ones(2)) end, "one-element tensor")
    assert.error_matches(function() return a:masked_select(av.ones(4):byte()) end, "cannot be broadcast")
  end)
end)

-- ---- PyTorch parity -----------------------------------------------------------------

local dtypes = {"float32", "float64", "int64", "int32", "uint8"}
local function rand_as(dt, ...)
  if dt == "uint8" then return av.randint(0, 250, {...}, {dtype = "uint8"}) end
  if dt == "int64" or dt == "int32" then return av.randint(-1000, 1000, {...}, {dtype = dt}) end
  return av.randn(...):to(dt)
end

for _, dt in ipairs(dtypes) do
  -- b is a transposed view and c an expanded one; torch sees their values
  local a = rand_as(dt, 3, 5)
  local b = rand_as(dt, 4, 3):t()
  local c = rand_as(dt, 3, 1):expand(3, 2)
  parity.check("cat dim 2 " .. dt, "torch.cat([a, b, c], 1)", {a = a, b = b, c = c}, av.cat({a, b, c}, 2))
  parity.check("cat dim 1 " .. dt, "torch.cat([a.t(), b.t()], 0)", {a = a, b = b}, a:t():cat(b:t(), 1))
  parity.check("stack dim 3 " .. dt, "torch.stack([a, a * 0 + 1], 2)", {a = a}, av.stack({a, a:mul(0):add(1)}, 3))
  local x = rand_as(dt, 6, 7, 5):permute(3, 1, 2) -- 5x6x7, non-contiguous
  for d, n in ipairs({5, 6, 7}) do
    local i = av.randint(1, n + 1, {9})
    parity.check(("index_select dim %d %s"):format(d, dt), ("torch.index_select(x, %d, i - 1)"):format(d - 1),
      {x = x, i = i}, x:index_select(d, i))
    local gshape = {4, 5, 6}
    gshape[d] = 8
    local gi = av.randint(1, n + 1, gshape)
    parity.check(("gather dim %d %s"):format(d, dt), ("torch.gather(x, %d, i - 1)"):format(d - 1),
      {x = x, i = gi}, x:gather(d, gi))
  end
  local m = av.rand(5, 6, 7):gt(0.6)
  parity.check("masked_fill " .. dt, "x.masked_fill(m.bool(), 3)", {x = x, m = m}, x:masked_fill(m, 3))
  parity.check("masked_fill broadcast " .. dt, "x.masked_fill(m.bool(), 7)", {x = x, m = m[1][1]}, x:masked_fill(m[1][1], 7))
  parity.check("masked_select " .. dt, "torch.masked_select(x, m.bool())", {x = x, m = m}, x:masked_select(m))
  parity.check("masked_select broadcast " .. dt, "torch.masked_select(x, m.bool())", {x = x, m = m[2]}, x:masked_select(m[2]))
  local z = av.randint(0, 3, {4, 5, 3}):to(dt):transpose(1, 3)
  parity.check("nonzero " .. dt, "torch.nonzero(z) + 1", {z = z}, z:nonzero())
end

do
  -- mixed dtypes promote like torch.cat; legacy empty tensors are skipped
  local i, f, e = av.randint(0, 9, {2, 3}, {dtype = "int32"}), av.randn(2, 3):double(), av.empty(0)
  parity.check("cat promotes", "torch.cat([i, f, e], 0)", {i = i, f = f, e = e}, av.cat({i, f, e}))
  parity.check("stack promotes", "torch.stack([i, i.to(torch.uint8)], 0)", {i = i}, av.stack({i, i:byte()}))

  -- scatter: unique indices along dim for assignment, repeats for the reductions
  local src = av.randint(-5, 6, {5, 6}):float()
  for d = 1, 2 do
    local self = av.randn(4, 6)
    local _, perm = av.rand(4, 6):sort(d)
    local idx = perm:narrow(1, 1, 3)
    parity.check(("scatter dim %d"):format(d), ("s.scatter(%d, i - 1, src)"):format(d - 1),
      {s = self, i = idx, src = src}, self:scatter(d, idx, src))
    local rep = av.randint(1, (d == 1 and 4 or 6) + 1, {3, 4})
    parity.check(("scatter add dim %d"):format(d), ("s.scatter(%d, i - 1, src, reduce='add')"):format(d - 1),
      {s = self, i = rep, src = src}, self:scatter(d, rep, src, {reduce = "add"}))
    parity.check(("scatter multiply dim %d"):format(d), ("s.scatter(%d, i - 1, src, reduce='multiply')"):format(d - 1),
      {s = self, i = rep, src = src}, self:scatter(d, rep, src, {reduce = "multiply"}), {tol = 1e-5})
    parity.check(("scatter value dim %d"):format(d), ("s.scatter(%d, i - 1, 2.5)"):format(d - 1),
      {s = self, i = idx}, self:scatter(d, idx, 2.5))
  end
  local labels = av.randint(1, 11, {50000})
  local counts = av.zeros(10, {dtype = "int64"}):scatter_(1, labels, 1, {reduce = "add"})
  parity.check("scatter add counts", "torch.bincount(i - 1, minlength=10)", {i = labels}, counts)

  -- sizes past the parallel grain (the suite runs with two threads)
  local big = av.randn(300, 200)
  local bigt = av.randn(200, 300):t()
  parity.check("cat large", "torch.cat([a, b, a], 0)", {a = big, b = bigt}, av.cat({big, bigt, big}))
  parity.check("cat large dim 2", "torch.cat([a, b], 1)", {a = big, b = bigt}, av.cat({big, bigt}, 2))
  local rows = av.randint(1, 301, {400})
  parity.check("index_select rows large", "torch.index_select(a, 0, i - 1)", {a = big, i = rows}, big:index_select(1, rows))
  local gi = av.randint(1, 201, {300, 250})
  parity.check("gather large", "torch.gather(a, 1, i - 1)", {a = bigt, i = gi}, bigt:gather(2, gi))
  local bm = big:gt(0.5)
  parity.check("masked_select large", "torch.masked_select(a, m.bool())", {a = bigt, m = bm}, bigt:masked_select(bm))
  parity.check("masked_fill large", "a.masked_fill(m.bool(), 0)", {a = bigt, m = bm}, bigt:masked_fill(bm, 0))
  parity.check("nonzero large", "torch.nonzero(m) + 1", {m = bm}, bm:nonzero())
end

parity.run()
