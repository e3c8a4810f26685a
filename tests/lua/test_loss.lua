-- Linear layers, the softmax family, losses, interpolation and padding:
-- argument forms and values, bad input, float64 gradient checks for every
-- option, then forward and gradient parity with PyTorch (vjp) in float32.
-- Targets are 1-based here; the Python expressions subtract 1 from them and
-- from ignore_index.
local av = require "aviary"
local parity = require "parity"
local gradcheck = require "gradcheck"

av.manual_seed(20261129)

local function d64(...) return av.randn({...}, {dtype = "float64"}) end

-- aviary's value and gradients of <f(xs...), g> (g random of the output's size)
local function vjp(f, xs, g)
  local leaves = {}
  for i, x in ipairs(xs) do leaves[i] = x:detach():requires_grad_(true) end
  local out = f(table.unpack(leaves))
  g = g or av.randn(out:size(), {dtype = out:dtype()})
  local grads = av.grad(out, leaves, {grad_outputs = g, allow_unused = true})
  local res = {out:detach()}
  for i = 1, #leaves do res[#res + 1] = grads[i] or av.zeros_like(leaves[i]) end
  return res, g
end

-- ===========================================================================
describe("linear", function()
  it("y = x W^T + b for 1-d, 2-d and 3-d inputs, with and without bias", function()
    local x, w, b = av.tensor({{1, 2}, {3, 4}}):float(), av.tensor({{1, 0}, {0, 1}, {1, 1}}):float(), av.tensor({10, 20, 30}):float()
    assert.tensor_near(av.linear(x, w, b), {{11, 22, 33}, {13, 24, 37}})
    assert.tensor_near(av.linear(x, w), {{1, 2, 3}, {3, 4, 7}})
    assert.tensor_near(av.linear(av.tensor({1, 2}):float(), w, b), {11, 22, 33})
    local x3 = av.randn(2, 3, 2)
    local y = av.linear(x3, w, b)
    assert.same(y:size(), {2, 3, 3})
    assert.tensor_near(y[2][3], av.linear(x3[2][3], w, b), 1e-6)
    assert.same(av.linear(av.zeros(0, 2), w, b):size(), {0, 3})
    assert.same(av.linear(av.zeros(4, 0, 2), w):size(), {4, 0, 3})
  end)
  it("shape and dtype errors show both shapes", function()
    local w = av.randn(3, 4)
    assert.error_matches(function() return av.linear(av.randn(2, 5), w) end,
      "aviary.linear: input of size 2x5 does not match weight of size 3x4")
    assert.error_matches(function() return av.linear(av.randn(2, 4), av.randn(4)) end, "weight must be 2-d")
    assert.error_matches(function() return av.linear(av.randn(2, 4), w, av.randn(4)) end,
      "bias of size 4 does not match weight of size 3x4")
    assert.error_matches(function() return av.linear(av.randn(2, 4), w:double()) end, "float32, float64")
    assert.error_matches(function() return av.linear(av.tensor(1.0), w) end, "at least 1 dimension")
    assert.error_matches(function() return av.linear(av.randn(2, 4), w, nil, 5) end, "unexpected argument 4")
  end)
  it("gradients (float64), also through a transposed weight and a 3-d input", function()
    gradcheck.check(function(x, w, b) return av.linear(x, w, b) end, {d64(3, 4), d64(2, 4), d64(2)})
    gradcheck.check(function(x, w) return av.linear(x, w) end, {d64(4), d64(3, 4)})
    gradcheck.check(function(x, w, b) return av.linear(x, w:t(), b) end, {d64(2, 3, 4), d64(4, 3), d64(3)})
    gradcheck.check(function(x, w) return av.linear(x:t(), w) end, {d64(4, 3), d64(2, 4)})
  end)
end)

-- ===========================================================================
describe("softmax and log_softmax", function()
  it("values, dims (negative, keyword), method form, dtype option", function()
    local x = av.tensor({{1, 2, 3}, {1, 1, 1}}):float()
    local e = {math.exp(1), math.exp(2), math.exp(3)}
    local s = e[1] + e[2] + e[3]
    assert.tensor_near(av.softmax(x, 2), {{e[1] / s, e[2] / s, e[3] / s}, {1 / 3, 1 / 3, 1 / 3}}, 1e-6)
    assert.tensor_near(x:softmax(-1), av.softmax(x, 2), 1e-7)
    assert.tensor_near(av.softmax(x, {dim = 2}), av.softmax(x, 2), 1e-7)
    local function sig(v) return 1 / (1 + math.exp(-v)) end
    assert.tensor_near(av.softmax(x, 1), {{0.5, sig(1), sig(2)}, {0.5, 1 - sig(1), 1 - sig(2)}}, 1e-6)
    assert.tensor_near(av.log_softmax(x, 2), av.softmax(x, 2):log(), 1e-6)
    assert.tensor_near(x:log_softmax(2):exp():sum(2), {1, 1}, 1e-6)
    local i = av.tensor({{1, 2}, {3, 4}})
    local y = av.softmax(i, 2, {dtype = "float64"})
    assert.equal(y:dtype(), "float64")
    assert.equal(av.log_softmax(x, 2, {dtype = "float64"}):dtype(), "float64")
    assert.tensor_near(av.softmax(av.tensor(3.0), 1), 1)
    assert.tensor_near(av.log_softmax(av.tensor(3.0), -1), 0)
    assert.same(av.softmax(av.zeros(0, 3), 2):size(), {0, 3})
  end)
  it("is stable for large inputs and propagates NaN to its row", function()
    local x = av.tensor({{1000, 1001, 1002}, {-1000, -1000, -1000}, {0, 0 / 0, 1}}):float()
    local y = av.softmax(x, 2)
    assert.tensor_near(y[1], av.softmax(av.tensor({0, 1, 2}):float(), 1), 1e-6)
    assert.tensor_near(y[2], {1 / 3, 1 / 3, 1 / 3}, 1e-6)
    local l = av.log_softmax(x, 2)
    assert.tensor_near(l[1], av.log_softmax(av.tensor({0, 1, 2}):float(), 1), 1e-5)
    for k = 1, 3 do assert.truthy(y[3][k] ~= y[3][k]); assert.truthy(l[3][k] ~= l[3][k]) end
  end)
  it("errors", function()
    local x = av.randn(2, 3)
    assert.error_matches(function() return av.softmax(x) end, "aviary.softmax: a dim is required")
    assert.error_matches(function() return av.softmax(x, 3) end, "dimension 3 out of range for a 2-d tensor")
    assert.error_matches(function() return av.log_softmax(x, 0) end, "1-based")
    assert.error_matches(function() return av.softmax(av.tensor({1, 2}), 1) end, "expected a float32 or float64 tensor, got int64")
    assert.error_matches(function() return av.softmax(x, 2, {dtype = "int64"}) end, "dtype must be float32 or float64")
    assert.error_matches(function() return av.softmax(x, 2, {dtpye = "float64"}) end, "unknown option 'dtpye'")
    assert.error_matches(function() return av.softmax(x, 1, {dim = 2}) end, "both")
  end)
  it("gradients (float64) over every dim, on non-contiguous inputs", function()
    for _, lg in ipairs({false, true}) do
      local f = lg and av.log_softmax or av.softmax
      gradcheck.check(function(x) return f(x, 2) end, {d64(3, 5)})
      gradcheck.check(function(x) return f(x, 1) end, {d64(3, 5)})
      gradcheck.check(function(x) return f(x, 2) end, {d64(2, 3, 4)})
      gradcheck.check(function(x) return f(x:t(), 2) end, {d64(4, 3)})
      gradcheck.check(function(x) return f(x:transpose(1, 3), -1) end, {d64(3, 2, 2)})
      gradcheck.check(function(x) return f(x, 1, {dtype = "float64"}) end, {d64(4)})
    end
  end)
  it("big rows and columns take the threaded paths with the same values", function()
    local x = av.randn(300, 257)
    local ref = (x - x:amax(2, true)):exp()
    ref = ref / ref:sum(2, true)
    assert.tensor_near(av.softmax(x, 2), ref, 1e-5)
    local xt = x:t():contiguous()
    assert.tensor_near(av.softmax(xt, 1), ref:t(), 1e-5)
  end)
end)

-- ===========================================================================
describe("cross_entropy and nll_loss", function()
  it("values by hand: mean, sum, none, weights, ignore_index", function()
    local x = av.tensor({{1, 2, 3}, {0, 0, 0}}):float()
    local t = av.tensor({3, 1})
    local lse1 = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    local l1, l2 = lse1 - 3, math.log(3)
    assert.near(av.cross_entropy(x, t):item(), (l1 + l2) / 2, 1e-6)
    assert.near(av.cross_entropy(x, t, {reduction = "sum"}):item(), l1 + l2, 1e-6)
    assert.tensor_near(av.cross_entropy(x, t, {reduction = "none"}), {l1, l2}, 1e-6)
    local w = av.tensor({2, 1, 0.5})
    assert.near(av.cross_entropy(x, t, {weight = w}):item(), (0.5 * l1 + 2 * l2) / 2.5, 1e-6)
    assert.near(av.cross_entropy(x, t, {ignore_index = 1}):item(), l1, 1e-6)
    assert.near(av.cross_entropy(x, av.tensor({3, -100})):item(), l1, 1e-6)
    assert.near(av.cross_entropy(x, t:int()):item(), (l1 + l2) / 2, 1e-6)
    assert.near(av.nll_loss(av.log_softmax(x, 2), t):item(), (l1 + l2) / 2, 1e-6)
    assert.tensor_near(av.nll_loss(x, t, {reduction = "none"}), {-3, 0})
    local all = av.cross_entropy(x, av.tensor({-100, -100}))
    assert.truthy(all:item() ~= all:item(), "all targets ignored gives NaN (0/0) like PyTorch")
    assert.near(av.cross_entropy(x, av.tensor({-100, -100}), {reduction = "sum"}):item(), 0, 0)
  end)
  it("label smoothing mixes in the mean of -log p over classes", function()
    local x = av.tensor({{1, 2, 3}}):float()
    local lp = av.log_softmax(x, 2)
    local want = 0.9 * -lp[1][3] + 0.1 / 3 * -(lp[1][1] + lp[1][2] + lp[1][3])
    assert.near(av.cross_entropy(x, av.tensor({3}), {label_smoothing = 0.1}):item(), want, 1e-6)
  end)
  it("accepts a 1-d input with a 0-d target and K-dim inputs", function()
    local x = av.randn(5)
    assert.equal(av.cross_entropy(x, av.tensor(2)):dim(), 0)
    assert.near(av.cross_entropy(x, av.tensor(2)):item(), av.cross_entropy(x:view(1, 5), av.tensor({2})):item(), 1e-6)
    local xk = av.randn(2, 4, 3, 2)
    local tk = av.randint(1, 5, {2, 3, 2})
    assert.same(av.cross_entropy(xk, tk, {reduction = "none"}):size(), {2, 3, 2})
    -- K-dim equals the flattened 2-d problem
    local flat = xk:permute(1, 3, 4, 2):reshape(-1, 4)
    assert.near(av.cross_entropy(xk, tk):item(), av.cross_entropy(flat, tk:reshape(-1)):item(), 1e-5)
  end)
  it("errors: float target, out of range, shapes, options", function()
    local x = av.randn(4, 3)
    assert.error_matches(function() return av.cross_entropy(x, av.rand(4)) end,
      "aviary.cross_entropy: expected class indices (int64) as target, got float32; targets are 1-based class numbers")
    assert.error_matches(function() return av.cross_entropy(x, av.tensor({1, 2, 4, 1})) end,
      "target 4 is out of range for 3 classes (expected 1..3, or ignore_index -100)")
    assert.error_matches(function() return av.cross_entropy(x, av.tensor({1, 0, 2, 1})) end, "target 0 is out of range")
    assert.error_matches(function() return av.nll_loss(x, av.tensor({1, -1, 2, 1})) end, "aviary.nll_loss: target -1 is out of range")
    assert.error_matches(function() return av.cross_entropy(x, av.tensor({1, 2, 3})) end,
      "target of size 3 does not match input of size 4x3 (expected target size 4)")
    assert.error_matches(function() return av.cross_entropy(av.randn(2, 3, 4), av.tensor({1, 2})) end,
      "target of size 2 does not match input of size 2x3x4 (expected target size 2x4)")
    assert.error_matches(function() return av.cross_entropy(x, av.tensor({1, 2, 3, 1}), {weight = av.ones(4)}) end,
      "weight of size 4 does not match the 3 classes")
    assert.error_matches(function() return av.cross_entropy(x, av.tensor({1, 2, 3, 1}), {reduction = "avg"}) end,
      "option 'reduction' must be 'mean', 'sum' or 'none', got 'avg'")
    assert.error_matches(function() return av.cross_entropy(x, av.tensor({1, 2, 3, 1}), {label_smoothing = 1.5}) end,
      "label_smoothing must be between 0 and 1")
    assert.error_matches(function() return av.cross_entropy(x, av.tensor({1, 2, 3, 1}), {ignore_idx = 1}) end,
      "unknown option 'ignore_idx'")
    assert.error_matches(function() return av.cross_entropy(x, av.tensor({1, 2, 3, 1}), {ignore_index = 1.5}) end,
      "option 'ignore_index' must be an integer")
    assert.error_matches(function() return av.cross_entropy(av.tensor(1.0), av.tensor(1)) end, "0-d")
    assert.error_matches(function() return av.nll_loss(x, av.tensor({1, 2, 3, 1}), {label_smoothing = 0.1}) end,
      "unknown option 'label_smoothing'")
    assert.error_matches(function() return av.cross_entropy(x:long(), av.tensor({1, 2, 3, 1})) end, "float32 or float64 input")
  end)
  it("gradients (float64) for every option", function()
    local t = av.tensor({3, 1, 2, 3})
    local ti = av.tensor({3, -100, 2, 1})
    local w = av.tensor({0.5, 2, 1.5}, {dtype = "float64"})
    for _, red in ipairs({"mean", "sum", "none"}) do
      for _, ls in ipairs({0, 0.2}) do
        gradcheck.check(function(x) return av.cross_entropy(x, t, {reduction = red, label_smoothing = ls}) end, {d64(4, 3)})
        gradcheck.check(function(x) return av.cross_entropy(x, ti, {weight = w, reduction = red, label_smoothing = ls}) end,
          {d64(4, 3)})
        gradcheck.check(function(x) return av.cross_entropy(x, t, {weight = w, ignore_index = 2, reduction = red,
          label_smoothing = ls}) end, {d64(4, 3)})
      end
      gradcheck.check(function(x) return av.nll_loss(x, ti, {weight = w, reduction = red}) end, {d64(4, 3)})
      gradcheck.check(function(x) return av.nll_loss(x, t, {reduction = red}) end, {d64(4, 3)})
    end
  end)
  it("gradients (float64): K-dim, non-contiguous, 1-d input", function()
    local tk = av.tensor({{{1, 3}, {2, -100}}, {{3, 3}, {1, 2}}}) -- 2 x 2 x 2
    local w = av.tensor({0.5, 2, 1.5}, {dtype = "float64"})
    for _, red in ipairs({"mean", "sum", "none"}) do
      gradcheck.check(function(x) return av.cross_entropy(x, tk, {weight = w, reduction = red, label_smoothing = 0.3}) end,
        {d64(2, 3, 2, 2)})
      gradcheck.check(function(x) return av.nll_loss(x, tk, {weight = w, reduction = red}) end, {d64(2, 3, 2, 2)})
    end
    gradcheck.check(function(x) return av.cross_entropy(x:t(), av.tensor({2, 1, 3, 3})) end, {d64(3, 4)})
    gradcheck.check(function(x) return av.cross_entropy(x:permute(1, 3, 2), tk:select(3, 1), {reduction = "none"}) end,
      {d64(2, 2, 3)})
    gradcheck.check(function(x) return av.cross_entropy(x, av.tensor(2), {label_smoothing = 0.1}) end, {d64(3)})
  end)
end)

-- ===========================================================================
describe("binary_cross_entropy_with_logits, mse_loss, l1_loss", function()
  it("values by hand and stability for large logits", function()
    local x, t = av.tensor({0, 100, -100}):float(), av.tensor({1, 0, 1}):float()
    local l = av.binary_cross_entropy_with_logits(x, t, {reduction = "none"})
    assert.tensor_near(l, {math.log(2), 100, 100}, 1e-5)
    local pw = av.tensor({3, 1, 1}):float()
    assert.tensor_near(av.binary_cross_entropy_with_logits(x, t, {pos_weight = pw, reduction = "none"}),
      {3 * math.log(2), 100, 100}, 1e-5)
    assert.near(av.binary_cross_entropy_with_logits(x, t, {weight = av.tensor({2, 0, 0}):float()}):item(), 2 * math.log(2) / 3, 1e-6)
    assert.near(av.mse_loss(av.tensor({1, 2}):float(), av.tensor({0, 0}):float()):item(), 2.5, 1e-6)
    assert.near(av.mse_loss(av.tensor({1, 2}):float(), av.tensor({0, 0}):float(), {reduction = "sum"}):item(), 5, 1e-6)
    assert.tensor_near(av.l1_loss(av.tensor({1, -2}):float(), av.tensor({0, 0}):float(), {reduction = "none"}), {1, 2})
    assert.near(av.l1_loss(av.tensor({1, -2}):float(), av.tensor({0, 0}):float()):item(), 1.5, 1e-6)
  end)
  it("errors show both shapes", function()
    assert.error_matches(function() return av.mse_loss(av.randn(4, 1), av.randn(4)) end,
      "aviary.mse_loss: target of size 4 must have the same size as input of size 4x1")
    assert.error_matches(function() return av.l1_loss(av.randn(3), av.randn(3):double()) end, "float32 and float64")
    assert.error_matches(function() return av.binary_cross_entropy_with_logits(av.randn(2, 3), av.rand(3)) end,
      "target of size 3 must have the same size as input of size 2x3")
    assert.error_matches(function() return av.binary_cross_entropy_with_logits(av.randn(2, 3), av.rand(2, 3),
      {pos_weight = av.ones(2)}) end, "pos_weight of size 2 does not broadcast to input of size 2x3")
    assert.error_matches(function() return av.binary_cross_entropy_with_logits(av.randn(2, 3), av.rand(2, 3),
      {weight = av.ones(3, 1)}) end, "weight of size 3x1 does not broadcast to input of size 2x3")
    assert.error_matches(function() return av.mse_loss(av.randn(3), av.randn(3), {reduction = 1}) end, "option 'reduction'")
  end)
  it("gradients (float64)", function()
    for _, red in ipairs({"mean", "sum", "none"}) do
      gradcheck.check(function(x, t) return av.binary_cross_entropy_with_logits(x, t, {reduction = red}) end,
        {d64(3, 4), av.rand({3, 4}, {dtype = "float64"})})
      -- pos_weight gets no gradient (as in PyTorch, where it may not require grad)
      local pw = av.rand({4}, {dtype = "float64"}) + 0.5
      gradcheck.check(function(x, t, w)
        return av.binary_cross_entropy_with_logits(x, t, {weight = w, pos_weight = pw, reduction = red})
      end, {d64(3, 4), av.rand({3, 4}, {dtype = "float64"}), av.rand({4}, {dtype = "float64"})})
      gradcheck.check(function(x, t) return av.mse_loss(x:t(), t, {reduction = red}) end, {d64(4, 3), d64(3, 4)})
      gradcheck.check(function(x, t) return av.l1_loss(x, t, {reduction = red}) end, {d64(3, 4), d64(3, 4)})
    end
  end)
end)

-- ===========================================================================
describe("interpolate", function()
  it("nearest and bilinear values by hand", function()
    local x = av.tensor({{{{1, 2}, {3, 4}}}}):float()
    assert.tensor_near(av.interpolate(x, {scale_factor = 2}),
      {{{{1, 1, 2, 2}, {1, 1, 2, 2}, {3, 3, 4, 4}, {3, 3, 4, 4}}}})
    assert.tensor_near(av.interpolate(x, {size = {3, 3}, mode = "bilinear", align_corners = true}),
      {{{{1, 1.5, 2}, {2, 2.5, 3}, {3, 3.5, 4}}}})
    assert.tensor_near(av.interpolate(x, {size = 1, mode = "bilinear"}), {{{{2.5}}}})
    assert.tensor_near(av.interpolate(x, 3), av.interpolate(x, {size = {3, 3}}))
    assert.tensor_near(av.interpolate(x, {3, 4}), av.interpolate(x, {size = {3, 4}}))
    assert.same(av.interpolate(av.randn(1, 2, 5), {scale_factor = 1.5}):size(), {1, 2, 7})
    assert.same(av.interpolate(av.randn(1, 2, 5), {size = 3, mode = "linear"}):size(), {1, 2, 3})
    assert.same(av.interpolate(av.randn(2, 3, 5, 7), {scale_factor = {0.5, 2.5}}):size(), {2, 3, 2, 17})
    local u = av.tensor({{{{1, 2}, {3, 4}}}}, {dtype = "uint8"})
    assert.equal(av.interpolate(u, {scale_factor = 2}):dtype(), "uint8")
  end)
  it("errors: size and scale_factor, align_corners with nearest, ranks", function()
    local x = av.randn(1, 1, 4, 4)
    assert.error_matches(function() return av.interpolate(x, {size = 2, scale_factor = 2}) end,
      "aviary.interpolate: only one of size and scale_factor may be given")
    assert.error_matches(function() return av.interpolate(x, {mode = "bilinear"}) end, "either size or scale_factor must be given")
    assert.error_matches(function() return av.interpolate(x) end, "either size or scale_factor must be given")
    assert.error_matches(function() return av.interpolate(x, {size = 2, align_corners = true}) end,
      "align_corners can only be set with the linear modes")
    assert.error_matches(function() return av.interpolate(x, {size = 2, align_corners = false}) end, "align_corners")
    assert.error_matches(function() return av.interpolate(av.randn(4, 4), {size = 2}) end,
      "expected a 3-d (N x C x W) or 4-d (N x C x H x W) input, got size 4x4")
    assert.error_matches(function() return av.interpolate(av.randn(1, 1, 4), {size = 2, mode = "bilinear"}) end,
      "mode 'bilinear' needs a 4-d input")
    assert.error_matches(function() return av.interpolate(x, {size = 2, mode = "bicubic"}) end, "unknown mode 'bicubic'")
    assert.error_matches(function() return av.interpolate(x, {size = {1, 2, 3}}) end, "'size' must have 1 or 2 entries")
    assert.error_matches(function() return av.interpolate(av.randn(1, 1, 4), {size = {2, 2}}) end,
      "size has 2 entries but the input has 1 spatial dim")
    assert.error_matches(function() return av.interpolate(x, {size = 0}) end, "output size 0 is invalid")
    assert.error_matches(function() return av.interpolate(x, {scale_factor = 0.1}) end,
      "input and output sizes should be greater than 0")
    assert.error_matches(function() return av.interpolate(x, {scale_factor = -1}) end, "scale_factor must be positive")
    assert.error_matches(function() return av.interpolate(x:long(), {size = 2, mode = "bilinear"}) end, "float32 or float64")
    assert.error_matches(function() return av.interpolate(x, {sizes = 2}) end, "unknown option 'sizes'")
  end)
  it("gradients (float64): nearest, bilinear with align_corners true and false, up and down", function()
    local x = function() return d64(2, 2, 3, 4) end
    gradcheck.check(function(a) return av.interpolate(a, {size = {5, 7}}) end, {x()})
    gradcheck.check(function(a) return av.interpolate(a, {scale_factor = 2}) end, {x()})
    gradcheck.check(function(a) return av.interpolate(a, {size = {2, 3}}) end, {x()})
    gradcheck.check(function(a) return av.interpolate(a, {scale_factor = 1.7}) end, {d64(1, 2, 4, 5)})
    gradcheck.check(function(a) return av.interpolate(a, {scale_factor = 1.5}) end, {d64(1, 2, 5)})
    for _, ac in ipairs({true, false}) do
      gradcheck.check(function(a) return av.interpolate(a, {size = {5, 7}, mode = "bilinear", align_corners = ac}) end, {x()})
      gradcheck.check(function(a) return av.interpolate(a, {size = {2, 3}, mode = "bilinear", align_corners = ac}) end, {x()})
      gradcheck.check(function(a) return av.interpolate(a, {scale_factor = {1.5, 0.6}, mode = "bilinear",
        align_corners = ac}) end, {x()})
      gradcheck.check(function(a) return av.interpolate(a:transpose(3, 4), {size = {6, 1}, mode = "bilinear",
        align_corners = ac}) end, {x()})
      gradcheck.check(function(a) return av.interpolate(a, {size = 7, mode = "linear", align_corners = ac}) end, {d64(2, 2, 4)})
    end
  end)
end)

-- ===========================================================================
describe("pad", function()
  it("constant (with a value), negative crops, reflect, replicate, circular", function()
    local x = av.tensor({{1, 2, 3}})
    assert.tensor_near(av.pad(x, {1, 2}), {{0, 1, 2, 3, 0, 0}})
    assert.tensor_near(av.pad(x, {1, 0, 1, 0}, {value = 9}), {{9, 9, 9, 9}, {9, 1, 2, 3}})
    assert.tensor_near(av.pad(x, {-1, 1}), {{2, 3, 0}})
    assert.tensor_near(av.pad(x, {-1, -1}), {{2}})
    local r = av.tensor({{{1, 2, 3}}})
    assert.tensor_near(av.pad(r, {2, 2}, {mode = "reflect"}), {{{3, 2, 1, 2, 3, 2, 1}}})
    assert.tensor_near(av.pad(r, {2, 1}, {mode = "replicate"}), {{{1, 1, 1, 2, 3, 3}}})
    assert.tensor_near(av.pad(r, {2, 1}, {mode = "circular"}), {{{2, 3, 1, 2, 3, 1}}})
    assert.tensor_near(av.pad(r, {1, 1}, "reflect"), {{{2, 1, 2, 3, 2}}})
    local m = av.tensor({{{{1, 2}, {3, 4}}}})
    assert.tensor_near(av.pad(m, {1, 0, 0, 1}, {mode = "replicate"}), {{{{1, 1, 2}, {3, 3, 4}, {3, 3, 4}}}})
    assert.same(av.pad(av.zeros(2, 3, 4, 5), {1, 1, 2, 2, 3, 3, 1, 0}):size(), {3, 9, 8, 7})
    assert.equal(av.pad(av.tensor({1, 2}), {1, 1}):dtype(), "int64")
    assert.tensor_near(av.pad(av.tensor({1, 2}), {1, 1}, {value = 7}), {7, 1, 2, 7})
    assert.tensor_near(av.pad(av.tensor({1, 2}), {}), {1, 2})
  end)
  it("errors: reflect too large, ranks, lengths, values", function()
    local x = av.randn(1, 2, 3)
    assert.error_matches(function() return av.pad(x, {3, 0}, {mode = "reflect"}) end,
      "aviary.pad: reflect padding (3, 0) must be less than the size 3 of dim 3 of input of size 1x2x3")
    assert.error_matches(function() return av.pad(av.randn(1, 1, 2, 2), {1, 1, 2, 0}, {mode = "reflect"}) end,
      "reflect padding (2, 0) must be less than the size 2 of dim 3")
    assert.error_matches(function() return av.pad(av.randn(3), {1, 1}, {mode = "reflect"}) end,
      "mode 'reflect' with 2 entries needs a 2-d or 3-d input, got size 3")
    assert.error_matches(function() return av.pad(av.randn(2, 2, 2, 2, 2, 2), {1, 1}, {mode = "replicate"}) end,
      "needs a 2-d or 3-d input")
    assert.error_matches(function() return av.pad(av.randn(1, 2, 2, 2, 2), {1, 1, 1, 1, 1, 1, 1, 1}, {mode = "replicate"}) end,
      "pads 1 to 3 trailing dims")
    assert.error_matches(function() return av.pad(x, {1}) end, "even length")
    assert.error_matches(function() return av.pad(x, {1, 1, 1, 1, 1, 1, 1, 1}) end, "8 padding entries pad 4 dims but the input of size 1x2x3 has 3")
    assert.error_matches(function() return av.pad(x, {-2, -2}) end, "dim 3 of size 3 with padding (-2, -2) would have size -1")
    assert.error_matches(function() return av.pad(x, {1, 1}, {mode = "reflect", value = 1}) end, "takes no fill value")
    assert.error_matches(function() return av.pad(x, {1, 1}, {mode = "wrap"}) end, "unknown mode 'wrap'")
    assert.error_matches(function() return av.pad(x, {4, 0}, {mode = "circular"}) end, "circular padding (4, 0) must be at most")
    assert.error_matches(function() return av.pad(x, 1) end, "argument 2 must be a table of paddings")
    assert.error_matches(function() return av.pad(x, {1.5, 1}) end, "padding entry 1 must be an integer")
  end)
  it("gradients (float64) for each mode, negative padding, non-contiguous input", function()
    gradcheck.check(function(a) return av.pad(a, {1, 2, 0, 1}, {value = 3}) end, {d64(2, 3, 4)})
    gradcheck.check(function(a) return av.pad(a, {-1, 2, 1, -1}) end, {d64(2, 3, 4)})
    gradcheck.check(function(a) return av.pad(a, {1, 0, 0, 1, 1, 1, 1, 0}) end, {d64(2, 3, 2, 2)})
    for _, mode in ipairs({"reflect", "replicate", "circular"}) do
      gradcheck.check(function(a) return av.pad(a, {2, 1}, {mode = mode}) end, {d64(2, 3, 4)})
      gradcheck.check(function(a) return av.pad(a, {1, 2, 2, 0}, {mode = mode}) end, {d64(2, 3, 4)})
      gradcheck.check(function(a) return av.pad(a:transpose(2, 3), {1, 1, 2, 1}, {mode = mode}) end, {d64(1, 3, 4)})
      gradcheck.check(function(a) return av.pad(a, {1, 1, 0, 1, 1, 0}, {mode = mode}) end, {d64(1, 2, 3, 3)})
      gradcheck.check(function(a) return av.pad(a, {-1, 2}, {mode = mode}) end, {d64(2, 4)})
    end
  end)
end)

-- ===========================================================================
-- PyTorch parity, float32: forward values and gradients (vjp)
local function check(name, expr, f, xs, extra, opts)
  local res, g = vjp(f, xs)
  local inputs = {g = g}
  local names = {"x", "y", "z", "u"}
  for i, x in ipairs(xs) do inputs[names[i]] = x end
  for k, v in pairs(extra or {}) do inputs[k] = v end
  parity.check(name, expr, inputs, res, opts or {tol = 2e-5})
end

do -- linear
  local x, w, b = av.randn(16, 512), av.randn(200, 512) * 0.05, av.randn(200)
  check("linear 16x512 . 200x512", "vjp(F.linear, x, y, z, v=g)", av.linear, {x, w, b}, nil, {tol = 1e-4})
  check("linear 3-d no bias", "vjp(lambda a, b: F.linear(a, b), x, y, v=g)", function(a, b2) return av.linear(a, b2) end,
    {av.randn(2, 3, 8), av.randn(5, 8)})
  check("linear 1-d", "vjp(F.linear, x, y, z, v=g)", av.linear, {av.randn(8), av.randn(5, 8), av.randn(5)})
  check("linear transposed weight", "vjp(lambda a, b, c: F.linear(a, b.t(), c), x, y, z, v=g)",
    function(a, b2, c) return av.linear(a, b2:t(), c) end, {av.randn(6, 8), av.randn(8, 5), av.randn(5)})
end

do -- softmax family
  for _, lg in ipairs({false, true}) do
    local f, pf = lg and av.log_softmax or av.softmax, lg and "F.log_softmax" or "F.softmax"
    check(pf .. " 256x1000 dim 2", ("vjp(lambda a: %s(a, dim=1), x, v=g)"):format(pf), function(a) return f(a, 2) end,
      {av.randn(256, 1000) * 3})
    check(pf .. " 8x7x33 dim 2", ("vjp(lambda a: %s(a, dim=1), x, v=g)"):format(pf), function(a) return f(a, 2) end,
      {av.randn(8, 7, 33)})
    check(pf .. " 4x300x5 dim 1", ("vjp(lambda a: %s(a, dim=0), x, v=g)"):format(pf), function(a) return f(a, 1) end,
      {av.randn(4, 300, 5)})
    check(pf .. " transposed", ("vjp(lambda a: %s(a.t(), dim=-1), x, v=g)"):format(pf), function(a) return f(a:t(), -1) end,
      {av.randn(9, 13)})
    check(pf .. " dtype float64", ("vjp(lambda a: %s(a, dim=1, dtype=torch.float64), x, v=g)"):format(pf),
      function(a) return f(a, 2, {dtype = "float64"}) end, {av.randn(5, 6)})
  end
end

do -- cross entropy and nll
  local x = av.randn(16, 200) * 2
  local t = av.randint(1, 201, {16})
  local w = av.rand(200) + 0.5
  local ti = t:clone()
  ti[3] = -100
  ti[7] = -100
  for _, red in ipairs({"mean", "sum", "none"}) do
    check("cross_entropy " .. red, ("vjp(lambda a: F.cross_entropy(a, t - 1, reduction='%s'), x, v=g)"):format(red),
      function(a) return av.cross_entropy(a, t, {reduction = red}) end, {x}, {t = t})
    check("cross_entropy weight ignore " .. red,
      ("vjp(lambda a: F.cross_entropy(a, t - 1, weight=w, ignore_index=-101, reduction='%s'), x, v=g)"):format(red),
      function(a) return av.cross_entropy(a, ti, {weight = w, reduction = red}) end, {x}, {t = ti, w = w})
    check("cross_entropy smoothing weight ignore " .. red,
      ("vjp(lambda a: F.cross_entropy(a, t - 1, weight=w, ignore_index=4, label_smoothing=0.15, reduction='%s'), x, v=g)")
        :format(red),
      function(a) return av.cross_entropy(a, t, {weight = w, ignore_index = 5, label_smoothing = 0.15, reduction = red}) end,
      {x}, {t = t, w = w})
    check("cross_entropy smoothing " .. red,
      ("vjp(lambda a: F.cross_entropy(a, t - 1, label_smoothing=0.1, ignore_index=-101, reduction='%s'), x, v=g)"):format(red),
      function(a) return av.cross_entropy(a, ti, {label_smoothing = 0.1, reduction = red, ignore_index = -100}) end,
      {x}, {t = ti})
    check("nll_loss weight ignore " .. red,
      ("vjp(lambda a: F.nll_loss(a, t - 1, weight=w, ignore_index=-101, reduction='%s'), x, v=g)"):format(red),
      function(a) return av.nll_loss(a, ti, {weight = w, reduction = red}) end, {av.randn(16, 200)}, {t = ti, w = w})
  end
  -- K-dim: N x C x H x W
  local xk = av.randn(3, 5, 4, 6)
  local tk = av.randint(1, 6, {3, 4, 6})
  tk[1][1][1] = 0
  for _, red in ipairs({"mean", "none"}) do
    check("cross_entropy K-dim " .. red,
      ("vjp(lambda a: F.cross_entropy(a, t - 1, weight=w, ignore_index=-1, label_smoothing=0.2, reduction='%s'), x, v=g)")
        :format(red),
      function(a) return av.cross_entropy(a, tk, {weight = av.tensor({1, 2, 3, 0.5, 1}), ignore_index = 0,
        label_smoothing = 0.2, reduction = red}) end, {xk}, {t = tk, w = av.tensor({1, 2, 3, 0.5, 1})})
    check("nll_loss K-dim " .. red, ("vjp(lambda a: F.nll_loss(a, t - 1, ignore_index=-1, reduction='%s'), x, v=g)"):format(red),
      function(a) return av.nll_loss(a, tk, {ignore_index = 0, reduction = red}) end, {xk}, {t = tk})
  end
  local tb = av.randint(1, 4, {2, 70, 300}, {dtype = "int32"})
  check("cross_entropy big K-dim (threaded) int32 target", "vjp(lambda a: F.cross_entropy(a, t.long() - 1), x, v=g)",
    function(a) return av.cross_entropy(a, tb) end, {av.randn(2, 3, 70, 300)}, {t = tb})
  local t256 = av.randint(1, 201, {256})
  check("cross_entropy 256x200 (threaded)", "vjp(lambda a: F.cross_entropy(a, t - 1), x, v=g)",
    function(a) return av.cross_entropy(a, t256) end, {av.randn(256, 200) * 3}, {t = t256})
  check("cross_entropy transposed input", "vjp(lambda a: F.cross_entropy(a.t(), t - 1, label_smoothing=0.05), x, v=g)",
    function(a) return av.cross_entropy(a:t(), t, {label_smoothing = 0.05}) end, {av.randn(200, 16)}, {t = t})
  check("cross_entropy 1-d input", "vjp(lambda a: F.cross_entropy(a, t - 1), x, v=g)",
    function(a) return av.cross_entropy(a, av.tensor(3)) end, {av.randn(7)}, {t = av.tensor(3)})
end

do -- elementwise losses
  local x, t = av.randn(6, 5) * 3, av.rand(6, 5)
  local w, pw = av.rand(5), av.rand(5) + 0.5
  for _, red in ipairs({"mean", "sum", "none"}) do
    check("bce_with_logits " .. red,
      ("vjp(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction='%s'), x, y, v=g)"):format(red),
      function(a, b) return av.binary_cross_entropy_with_logits(a, b, {reduction = red}) end, {x, t})
    check("bce_with_logits weight pos_weight " .. red,
      ("vjp(lambda a, b: F.binary_cross_entropy_with_logits(a, b, weight=w, pos_weight=pw, reduction='%s'), x, y, v=g)")
        :format(red),
      function(a, b) return av.binary_cross_entropy_with_logits(a, b, {weight = w, pos_weight = pw, reduction = red}) end,
      {x, t}, {w = w, pw = pw})
    check("mse_loss " .. red, ("vjp(lambda a, b: F.mse_loss(a, b, reduction='%s'), x, y, v=g)"):format(red),
      function(a, b) return av.mse_loss(a, b, {reduction = red}) end, {x, av.randn(6, 5)})
    check("l1_loss " .. red, ("vjp(lambda a, b: F.l1_loss(a, b, reduction='%s'), x, y, v=g)"):format(red),
      function(a, b) return av.l1_loss(a, b, {reduction = red}) end, {x, av.randn(6, 5)})
  end
end

do -- interpolate
  local function pysize(s) return type(s) == "table" and ("(%d, %d)"):format(s[1], s[2]) or tostring(s) end
  local x = av.randn(2, 3, 5, 7)
  local cases = {
    {size = {10, 14}}, {size = {3, 4}}, {size = {7, 9}}, {size = 6}, {scale_factor = 2}, {scale_factor = 1.7},
    {scale_factor = 0.6}, {scale_factor = {1.5, 0.45}}, {scale_factor = 3}, {size = {5, 7}},
  }
  for _, c in ipairs(cases) do
    local py = c.size and ("size=" .. pysize(c.size)) or ("scale_factor=" .. (type(c.scale_factor) == "table" and
      ("(%g, %g)"):format(c.scale_factor[1], c.scale_factor[2]) or ("%g"):format(c.scale_factor)))
    local lua = c.size and ("size " .. pysize(c.size)) or ("scale " .. py)
    check("interpolate nearest " .. lua, ("vjp(lambda a: F.interpolate(a, %s, mode='nearest'), x, v=g)"):format(py),
      function(a) return av.interpolate(a, {size = c.size, scale_factor = c.scale_factor}) end, {x})
    for _, ac in ipairs({false, true}) do
      check(("interpolate bilinear align_corners=%s %s"):format(ac, lua),
        ("vjp(lambda a: F.interpolate(a, %s, mode='bilinear', align_corners=%s), x, v=g)"):format(py, ac and "True" or "False"),
        function(a) return av.interpolate(a, {size = c.size, scale_factor = c.scale_factor, mode = "bilinear",
          align_corners = ac}) end, {x})
    end
  end
  check("interpolate bilinear default align_corners, recompute_scale_factor",
    "vjp(lambda a: F.interpolate(a, scale_factor=1.3, mode='bilinear', recompute_scale_factor=True), x, v=g)",
    function(a) return av.interpolate(a, {scale_factor = 1.3, mode = "bilinear", recompute_scale_factor = true}) end, {x})
  check("interpolate nearest recompute_scale_factor",
    "vjp(lambda a: F.interpolate(a, scale_factor=1.3, recompute_scale_factor=True), x, v=g)",
    function(a) return av.interpolate(a, {scale_factor = 1.3, recompute_scale_factor = true}) end, {x})
  check("interpolate bilinear non-contiguous",
    "vjp(lambda a: F.interpolate(a.transpose(2, 3), size=(9, 4), mode='bilinear'), x, v=g)",
    function(a) return av.interpolate(a:transpose(3, 4), {size = {9, 4}, mode = "bilinear"}) end, {x})
  check("interpolate 1-d nearest", "vjp(lambda a: F.interpolate(a, scale_factor=2.5), x, v=g)",
    function(a) return av.interpolate(a, {scale_factor = 2.5}) end, {av.randn(2, 3, 11)})
  check("interpolate 1-d linear", "vjp(lambda a: F.interpolate(a, size=4, mode='linear', align_corners=True), x, v=g)",
    function(a) return av.interpolate(a, {size = 4, mode = "linear", align_corners = true}) end, {av.randn(2, 3, 11)})
  check("interpolate big bilinear (threaded)", "vjp(lambda a: F.interpolate(a, scale_factor=2, mode='bilinear'), x, v=g)",
    function(a) return av.interpolate(a, {scale_factor = 2, mode = "bilinear"}) end, {av.randn(4, 16, 32, 32)})
end

do -- pad
  local x = av.randn(2, 3, 6, 7)
  local cases = {
    {{1, 2}, "constant"}, {{1, 2, 3, 0}, "constant", 1.5}, {{-1, 2, 0, -3}, "constant"}, {{1, 1, 1, 1, 1, 1, 1, 1}, "constant"},
    {{2, 3, 1, 5}, "reflect"}, {{5, 6, 4, 1}, "replicate"}, {{3, 7, 6, 2}, "circular"}, {{-2, 3, 1, -1}, "reflect"},
    {{3, 1}, "reflect", nil, 3}, {{2, 4}, "replicate", nil, 3},
  }
  for _, c in ipairs(cases) do
    local p, mode, value, rank = c[1], c[2], c[3], c[4]
    local input = rank == 3 and av.randn(3, 4, 9) or x
    local py = ("F.pad(a, (%s), mode='%s'%s)"):format(table.concat(p, ", "), mode, value and (", value=" .. value) or "")
    check(("pad %s {%s}"):format(mode, table.concat(p, ",")), ("vjp(lambda a: %s, x, v=g)"):format(py),
      function(a) return av.pad(a, p, {mode = mode, value = value}) end, {input})
  end
  check("pad reflect non-contiguous", "vjp(lambda a: F.pad(a.transpose(2, 3), (2, 1, 3, 3), mode='reflect'), x, v=g)",
    function(a) return av.pad(a:transpose(3, 4), {2, 1, 3, 3}, {mode = "reflect"}) end, {x})
end

parity.run()
