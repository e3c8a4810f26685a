-- nn operators: batch_norm, activations, 2-d pooling, dropout. Argument
-- forms and errors, gradient checks in float64 for every op and option, then
-- forward values and gradients (vjp) against PyTorch.
local av = require "aviary"
local gc = require "gradcheck"
local parity = require "parity"

av.manual_seed(20261130)

local function randn(...) return av.randn({...}, {dtype = "float64"}) end

-- output and gradients of <f(inputs), g> w.r.t. each input (like the Python vjp)
local function vjp(f, inputs, g)
  local xs = {}
  for i, x in ipairs(inputs) do xs[i] = x:detach():clone():requires_grad_(true) end
  local out = f(table.unpack(xs))
  local grads = av.grad(out, xs, {grad_outputs = g, allow_unused = true})
  local res = {out:detach()}
  for i = 1, #xs do res[#res + 1] = grads[i] or av.zeros_like(xs[i]) end
  return res
end

-------------------------------------------------------------------------------
describe("batch_norm", function()
  it("training normalises with the batch statistics and updates running stats", function()
    local x = av.randn(4, 3, 5, 5) * 2 + 3
    local rm, rv = av.zeros(3), av.ones(3)
    local y = av.batch_norm(x, rm, rv, nil, nil, {training = true, momentum = 0.2})
    assert.tensor_near(y:mean({1, 3, 4}), {0, 0, 0}, 1e-5)
    assert.tensor_near(y:var({1, 3, 4}, {unbiased = false}), {1, 1, 1}, 1e-3)
    local m = x:mean({1, 3, 4})
    local v = x:var({1, 3, 4}) -- unbiased for the running estimate
    assert.tensor_near(rm, m * 0.2, 1e-5)
    assert.tensor_near(rv, v * 0.2 + 0.8, 1e-5)
  end)
  it("eval uses the running statistics; weight and bias apply per channel", function()
    local x = av.tensor({{1, 2}, {3, 4}, {5, 6}}):float()
    local rm, rv = av.tensor({1.0, 2.0}), av.tensor({4.0, 1.0})
    local w, b = av.tensor({2.0, 3.0}), av.tensor({0.5, -1.0})
    local y = av.batch_norm(x, rm, rv, w, b, {eps = 0})
    assert.tensor_near(y, {{0.5, -1}, {2.5, 5}, {4.5, 11}}, 1e-6)
    assert.tensor_near(rm, {1, 2}) -- untouched
    assert.tensor_near(rv, {4, 1})
  end)
  it("running stats may be nil in training; weight and bias may be nil", function()
    local x = av.randn(8, 4)
    local y = av.batch_norm(x, nil, nil, nil, nil, {training = true})
    assert.tensor_near(y:mean(1), {0, 0, 0, 0}, 1e-5)
  end)
  it("bumps the version of the running stats (tensors saved before are invalidated)", function()
    local x = av.randn(4, 3, 2, 2)
    local rm = av.zeros(3)
    local w = av.ones(3):requires_grad_(true)
    local y = rm * w -- saves rm
    av.batch_norm(x, rm, nil, nil, nil, {training = true})
    assert.error_matches(function() y:sum():backward() end, "modified by an in-place operation")
  end)
  it("gradients of weight and bias alone (input without grad) match the full computation", function()
    local x, g = av.randn(4, 3, 5, 5), av.randn(4, 3, 5, 5)
    local w, b = av.rand(3) + 0.5, av.randn(3)
    for _, training in ipairs({true, false}) do
      local opts = {training = training}
      local rm, rv = av.randn(3), av.rand(3) + 0.5
      local full = vjp(function(x_, w_, b_) return av.batch_norm(x_, rm, rv, w_, b_, opts) end, {x, w, b}, g)
      local wl, bl = w:clone():requires_grad_(true), b:clone():requires_grad_(true)
      local gw, gb = table.unpack(av.grad(av.batch_norm(x, rm:clone(), rv:clone(), wl, bl, opts), {wl, bl}, {grad_outputs = g}))
      assert.tensor_near(gw, full[3], 1e-5)
      assert.tensor_near(gb, full[4], 1e-5)
    end
  end)
  it("gives the same results on any number of threads", function()
    local x, g = av.randn(8, 16, 20, 20), av.randn(8, 16, 20, 20)
    local function run()
      local xl = x:clone():requires_grad_(true)
      local y = av.batch_norm(xl, nil, nil, nil, nil, {training = true})
      y:backward(g)
      return y, xl.grad
    end
    local nt = av.get_num_threads()
    av.set_num_threads(1)
    local y1, g1 = run()
    av.set_num_threads(3)
    local y3, g3 = run()
    av.set_num_threads(nt)
    assert.equal(y1:eq(y3):all():item(), 1)
    assert.equal(g1:eq(g3):all():item(), 1)
  end)
  it("records one node", function()
    local x = av.randn(2, 3, 4, 4):requires_grad_(true)
    assert.equal(av.batch_norm(x, nil, nil, nil, nil, {training = true}).grad_fn, "NativeBatchNormBackward")
  end)
  it("errors", function()
    local x = av.randn(16, 64, 8, 8)
    assert.error_matches(function() av.batch_norm(x, av.zeros(32), av.ones(64)) end,
      "batch_norm: running_mean has 32 entries, expected 64 (channels of input 16x64x8x8)")
    assert.error_matches(function() av.batch_norm(x, av.zeros(64), av.ones(63)) end, "running_var has 63 entries")
    assert.error_matches(function() av.batch_norm(x, nil, nil, av.ones(3), nil, {training = true}) end,
      "weight has 3 entries, expected 64")
    assert.error_matches(function() av.batch_norm(x, nil, nil, nil, av.ones(65), {training = true}) end,
      "bias has 65 entries, expected 64")
    assert.error_matches(function() av.batch_norm(av.randn(5), nil, nil, nil, nil, {training = true}) end,
      "expected an input of 2 or more dims (N, C, ...), got a 1-d tensor of size 5")
    assert.error_matches(function() av.batch_norm(av.randn(1, 4), nil, nil, nil, nil, {training = true}) end,
      "expected more than 1 value per channel when training, got input of size 1x4")
    assert.error_matches(function() av.batch_norm(av.randn(1, 4, 1, 1), nil, nil, nil, nil, {training = true}) end,
      "expected more than 1 value per channel")
    assert.error_matches(function() av.batch_norm(x) end, "running_mean and running_var are required in evaluation mode")
    assert.error_matches(function() av.batch_norm(x:long(), nil, nil, nil, nil, {training = true}) end,
      "expected a float32 or float64 input, got int64")
    assert.error_matches(function() av.batch_norm(x, nil, nil, nil, nil, {training = true, momentun = 0.1}) end,
      "unknown option 'momentun'")
    assert.error_matches(function() av.batch_norm(x, "a") end, "running_mean (argument 2) must be a tensor or nil")
    -- a failed call leaves the running stats alone
    local rm = av.zeros(64)
    assert.has_error(function() av.batch_norm(x, rm, av.ones(3), nil, nil, {training = true}) end)
    assert.equal(rm:abs():sum():item(), 0)
  end)
end)

describe("activations", function()
  local x = av.tensor({-4.0, -3, -1, -0.5, 0, 0.5, 1, 3, 6, 7, 30})
  it("values at characteristic points", function()
    assert.tensor_near(av.leaky_relu(av.tensor({-2.0, 3})), {-0.02, 3})
    assert.tensor_near(av.leaky_relu(av.tensor({-2.0, 3}), {negative_slope = 0.5}), {-1, 3})
    assert.tensor_near(av.leaky_relu(av.tensor({-2.0, 3}), 0.25), {-0.5, 3})
    assert.tensor_near(av.elu(av.tensor({-1.0, 2}), {alpha = 2}), {2 * (math.exp(-1) - 1), 2}, 1e-6)
    assert.tensor_near(av.relu6(x), {0, 0, 0, 0, 0, 0.5, 1, 3, 6, 6, 6})
    assert.tensor_near(av.hardsigmoid(x), {0, 0, 1 / 3, 2.5 / 6, 0.5, 3.5 / 6, 4 / 6, 1, 1, 1, 1}, 1e-6)
    assert.tensor_near(av.hardswish(av.tensor({-4.0, -1, 1, 4})), {0, -1 / 3, 2 / 3, 4}, 1e-6)
    assert.tensor_near(av.silu(av.tensor({0.0, 1})), {0, 1 / (1 + math.exp(-1))}, 1e-6)
    assert.tensor_near(av.gelu(av.tensor({0.0, 1})), {0, 0.8413447460685429}, 1e-6)
    assert.tensor_near(av.gelu(av.tensor({1.0}), {approximate = "tanh"}), {0.8411919906082768}, 1e-6)
    assert.tensor_near(av.gelu(av.tensor({1.0}), "tanh"), {0.8411919906082768}, 1e-6)
    assert.tensor_near(av.softplus(av.tensor({0.0, 30})), {math.log(2), 30}, 1e-6)
    assert.tensor_near(av.softplus(av.tensor({1.0}), {beta = 2, threshold = 1}), {1}) -- above the threshold: x
  end)
  it("NaN propagates", function()
    local n = av.tensor({0 / 0})
    for _, f in ipairs({"leaky_relu", "elu", "gelu", "silu", "hardswish", "hardsigmoid", "relu6", "softplus"}) do
      local v = av[f](n):item()
      assert.truthy(v ~= v, f .. " of NaN is " .. v)
    end
  end)
  it("errors", function()
    assert.error_matches(function() av.gelu(x, {approximate = "fast"}) end, "approximate must be 'none' or 'tanh'")
    assert.error_matches(function() av.elu(av.tensor({1, 2})) end, "expected a float32 or float64 tensor, got int64")
    assert.error_matches(function() av.leaky_relu(x, {slope = 1}) end, "unknown option 'slope'")
    assert.error_matches(function() av.silu(x, {inplace = true}) end, "inplace = true is not supported")
    assert.error_matches(function() av.softplus(x, {beta = 0}) end, "beta must not be 0")
  end)
end)

describe("pooling", function()
  it("max_pool2d: values, 1-based indices and output sizes", function()
    local x = av.arange(16):float():view(1, 1, 4, 4)
    local y, i = av.max_pool2d(x, 2, {return_indices = true})
    assert.tensor_near(y, {{{{5, 7}, {13, 15}}}})
    assert.tensor_near(i, {{{{6, 8}, {14, 16}}}})
    assert.equal(i:dtype(), "int64")
    assert.same(av.max_pool2d(av.randn(2, 3, 112, 112), 3, {stride = 2, padding = 1}):size(), {2, 3, 56, 56})
    assert.same(av.max_pool2d(av.randn(3, 7, 7), 2, {ceil_mode = true}):size(), {3, 4, 4})
    assert.same(av.max_pool2d(av.randn(3, 7, 7), 2):size(), {3, 3, 3})
    assert.same(av.max_pool2d(av.randn(1, 1, 9, 10), {3, 2}, {stride = {2, 1}, dilation = {2, 1}}):size(), {1, 1, 3, 9})
  end)
  it("max_pool2d: NaN wins (the last NaN's index), -inf keeps the first position", function()
    local nan = 0 / 0
    local x = av.tensor({{{{1.0, nan}, {nan, 2}}}})
    local y, i = av.max_pool2d(x, 2, {return_indices = true})
    assert.truthy(y:item() ~= y:item())
    assert.equal(i:item(), 3)
    local z, j = av.max_pool2d(av.full({1, 1, 2, 2}, -math.huge), 2, {return_indices = true})
    assert.equal(z:item(), -math.huge)
    assert.equal(j:item(), 1)
  end)
  it("avg_pool2d: count_include_pad, divisor_override", function()
    local x = av.ones(1, 1, 3, 3)
    assert.tensor_near(av.avg_pool2d(x, 2, {stride = 1, padding = 1})[1][1][1], {0.25, 0.5, 0.5, 0.25})
    assert.tensor_near(av.avg_pool2d(x, 2, {stride = 1, padding = 1, count_include_pad = false})[1][1][1],
      {1, 1, 1, 1})
    assert.tensor_near(av.avg_pool2d(x, 3, {divisor_override = 3}), {{{{3}}}})
  end)
  it("adaptive pools: PyTorch's windows", function()
    local x = av.arange(10):float():view(1, 1, 1, 10)
    assert.tensor_near(av.adaptive_avg_pool2d(x, {1, 3}), {{{{1.5, 4.5, 7.5}}}})
    local y, i = av.adaptive_max_pool2d(x, {1, 3}, {return_indices = true})
    assert.tensor_near(y, {{{{3, 6, 9}}}})
    assert.tensor_near(i, {{{{4, 7, 10}}}})
    assert.same(av.adaptive_avg_pool2d(av.randn(3, 5, 5), 1):size(), {3, 1, 1})
    assert.same(av.adaptive_avg_pool2d(av.randn(2, 3, 5, 5), {7, 2}):size(), {2, 3, 7, 2})
  end)
  it("records one node each", function()
    local x = av.randn(1, 2, 6, 6):requires_grad_(true)
    assert.equal(av.max_pool2d(x, 2).grad_fn, "MaxPool2DWithIndicesBackward")
    assert.equal(av.avg_pool2d(x, 2).grad_fn, "AvgPool2DBackward")
    assert.equal(av.adaptive_avg_pool2d(x, 1).grad_fn, "AdaptiveAvgPool2DBackward")
    assert.equal(av.adaptive_max_pool2d(x, 1).grad_fn, "AdaptiveMaxPool2DBackward")
  end)
  it("errors", function()
    local x = av.randn(1, 2, 5, 5)
    assert.error_matches(function() av.max_pool2d(av.randn(5, 5), 2) end,
      "expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got a 2-d tensor of size 5x5")
    assert.error_matches(function() av.avg_pool2d(av.randn(1, 1, 1, 5, 5), 2) end, "got a 5-d tensor")
    assert.error_matches(function() av.adaptive_avg_pool2d(av.randn(5), 2) end, "got a 1-d tensor")
    assert.error_matches(function() av.max_pool2d(av.randn(1, 1, 2, 2), 3) end,
      "kernel 3x3 is larger than the padded input 2x2")
    assert.error_matches(function() av.avg_pool2d(av.randn(1, 1, 2, 6), {3, 1}) end, "is larger than the padded input")
    assert.error_matches(function() av.max_pool2d(av.randn(1, 1, 5, 5), 3, {dilation = 3}) end,
      "kernel 3x3 with dilation 3x3 is larger than the padded input 5x5")
    assert.error_matches(function() av.max_pool2d(x, 3, {padding = 2}) end,
      "padding 2x2 must be at most half the kernel size 3x3")
    assert.error_matches(function() av.avg_pool2d(x, {2, 4}, {padding = {1, 3}}) end,
      "padding 1x3 must be at most half the kernel size 2x4")
    assert.error_matches(function() av.max_pool2d(x, 0) end, "kernel size must be positive")
    assert.error_matches(function() av.max_pool2d(x, 1 << 40) end, "kernel size 1099511627776x1099511627776 is too large")
    assert.error_matches(function() av.adaptive_max_pool2d(x, {1 << 20, 1 << 20}) end, "output size 1048576x1048576 is too large")
    assert.error_matches(function() av.max_pool2d(x, 2, {stride = 0}) end, "stride must be positive")
    assert.error_matches(function() av.max_pool2d(x, 2, {padding = -1}) end, "padding must be non-negative")
    assert.error_matches(function() av.adaptive_avg_pool2d(x, 0) end, "output size must be positive, got 0x0")
    assert.error_matches(function() av.adaptive_max_pool2d(x, {3, -1}) end, "output size must be positive, got 3x-1")
    assert.error_matches(function() av.max_pool2d(x, 1.5) end, "kernel_size must be an integer")
    assert.error_matches(function() av.max_pool2d(x, {1, 2, 3}) end, "kernel_size must be an integer or a pair")
    assert.error_matches(function() av.max_pool2d(x, 2, 2) end, "expected an options table as argument 3")
    assert.error_matches(function() av.max_pool2d(x, 2, {strides = 2}) end, "unknown option 'strides'")
    assert.error_matches(function() av.avg_pool2d(x, 2, {dilation = 2}) end, "unknown option 'dilation'")
    assert.error_matches(function() av.avg_pool2d(x, 2, {divisor_override = 0}) end, "divisor_override must be a positive")
    assert.error_matches(function() av.max_pool2d(av.randn(2, 0, 4), 2) end, "non-zero channels, height and width")
    assert.error_matches(function() av.adaptive_avg_pool2d(x:long(), 2) end, "expected a float32 or float64 input")
  end)
end)

describe("dropout", function()
  it("zeroes a fraction p and scales the rest by 1/(1-p)", function()
    local x = av.ones(200000)
    local y = av.dropout(x, {p = 0.3})
    local zeros = y:eq(0):sum():item() / x:numel()
    assert.truthy(math.abs(zeros - 0.3) < 0.005, "fraction of zeros " .. zeros)
    local kept = y:masked_select(y:ne(0))
    assert.tensor_near(kept:amin(), 1 / 0.7, 1e-6)
    assert.tensor_near(kept:amax(), 1 / 0.7, 1e-6)
    assert.truthy(math.abs(y:mean():item() - 1) < 0.01)
    -- the default p is 0.5; a number works as p
    local z = av.dropout(x):eq(0):sum():item() / x:numel()
    assert.truthy(math.abs(z - 0.5) < 0.005, "fraction of zeros " .. z)
    assert.truthy(math.abs(av.dropout(x, 0.1):eq(0):sum():item() / x:numel() - 0.1) < 0.005)
  end)
  it("is reproducible with av.manual_seed and independent of the thread count", function()
    local x = av.randn(64, 100)
    av.manual_seed(11)
    local a = av.dropout(x, {p = 0.4})
    local b = av.dropout(x, {p = 0.4})
    av.manual_seed(11)
    local c = av.dropout(x, {p = 0.4})
    local nt = av.get_num_threads()
    av.manual_seed(11)
    av.set_num_threads(1)
    local d = av.dropout(x, {p = 0.4})
    av.set_num_threads(nt)
    assert.equal(a:eq(c):all():item(), 1)
    assert.equal(a:eq(d):all():item(), 1)
    assert.equal(a:eq(b):all():item(), 0)
  end)
  it("training = false and p = 0 return the input itself; p = 1 gives zeros", function()
    local x = av.randn(3, 4)
    assert.truthy(rawequal(av.dropout(x, {training = false}), x))
    assert.truthy(rawequal(av.dropout(x, {p = 0}), x))
    assert.truthy(rawequal(av.dropout(x, {p = 0.9, training = false}), x))
    assert.equal(av.dropout(x, {p = 1}):abs():sum():item(), 0)
  end)
  it("backward uses the saved mask", function()
    local x = av.ones(50, 40, {dtype = "float64"}):requires_grad_(true)
    local y = av.dropout(x, {p = 0.25})
    local g = av.randn(50, 40, {dtype = "float64"})
    y:backward(g)
    assert.tensor_near(x.grad, g * y, 1e-12) -- x is ones, so y is the scaled mask
    assert.equal(y.grad_fn, "DropoutBackward")
  end)
  it("errors", function()
    local x = av.randn(3)
    assert.error_matches(function() av.dropout(x, {p = 1.5}) end, "dropout probability has to be between 0 and 1, got 1.5")
    assert.error_matches(function() av.dropout(x, -0.1) end, "between 0 and 1")
    assert.error_matches(function() av.dropout(x, {p = 0 / 0, training = false}) end, "between 0 and 1")
    assert.error_matches(function() av.dropout(av.tensor({1, 2}), 0.5) end, "expected a float32 or float64 tensor")
    assert.error_matches(function() av.dropout(x, {prob = 0.5}) end, "unknown option 'prob'")
  end)
end)

-------------------------------------------------------------------------------
describe("gradient checks (float64)", function()
  it("batch_norm training: input, weight, bias through the batch statistics", function()
    gc.check(function(x, w, b) return av.batch_norm(x, nil, nil, w, b, {training = true}) end,
      {randn(3, 2, 3, 3), randn(2), randn(2)})
  end)
  it("batch_norm training without weight and bias, updating running stats", function()
    local rm, rv = av.zeros(2, {dtype = "float64"}), av.ones(2, {dtype = "float64"})
    gc.check(function(x) return av.batch_norm(x, rm, rv, nil, nil, {training = true, eps = 1e-3}) end, {randn(2, 2, 2, 3)})
  end)
  it("batch_norm training on (N, C) and (N, C, L), batch 1", function()
    gc.check(function(x, w, b) return av.batch_norm(x, nil, nil, w, b, {training = true}) end,
      {randn(5, 3), randn(3), randn(3)})
    gc.check(function(x, w) return av.batch_norm(x, nil, nil, w, nil, {training = true}) end, {randn(2, 3, 4), randn(3)})
    gc.check(function(x, b) return av.batch_norm(x, nil, nil, nil, b, {training = true}) end, {randn(1, 2, 3, 3), randn(2)})
  end)
  it("batch_norm eval", function()
    local rm, rv = randn(3), av.rand(3, {dtype = "float64"}) + 0.5
    gc.check(function(x, w, b) return av.batch_norm(x, rm, rv, w, b) end, {randn(2, 3, 2, 2), randn(3), randn(3)})
    gc.check(function(x) return av.batch_norm(x, rm, rv) end, {randn(4, 3)})
  end)
  it("batch_norm on a non-contiguous input", function()
    gc.check(function(x, w) return av.batch_norm(x:permute(1, 4, 2, 3), nil, nil, w, nil, {training = true}) end,
      {randn(2, 3, 3, 2), randn(2)})
  end)
  local acts = {
    {"leaky_relu", {}}, {"leaky_relu", {negative_slope = 0.2}}, {"elu", {}}, {"elu", {alpha = 0.5}},
    {"gelu", {}}, {"gelu", {approximate = "tanh"}}, {"silu", {}}, {"hardswish", {}}, {"hardsigmoid", {}},
    {"relu6", {}}, {"softplus", {}}, {"softplus", {beta = 2, threshold = 3}},
  }
  for _, a in ipairs(acts) do
    local name, opts = a[1], a[2]
    local label = name
    for k, v in pairs(opts) do label = label .. " " .. k .. "=" .. tostring(v) end
    it(label, function()
      -- spread over the interesting ranges (-5..7) away from the kinks
      local x = randn(4, 5) * 3 + 1
      gc.check(function(t) return av[name](t, opts) end, {x})
      gc.check(function(t) return av[name](t:t(), opts) end, {randn(3, 2) * 3}) -- non-contiguous
    end)
  end
  local maxpool = {
    {"kernel 2", {2, 3, 6, 6}, 2, {}},
    {"kernel 3 stride 2 padding 1", {2, 2, 7, 7}, 3, {stride = 2, padding = 1}},
    {"ceil_mode", {1, 2, 6, 7}, 3, {stride = 2, ceil_mode = true}},
    {"dilation 2 padding 1", {1, 2, 7, 8}, 3, {dilation = 2, padding = 1}},
    {"pairs", {2, 1, 7, 6}, {3, 2}, {stride = {2, 1}, padding = {1, 0}, dilation = {1, 2}}},
    {"unbatched", {2, 5, 5}, 2, {stride = 1}},
    {"batch 1, odd sizes, stride 3", {1, 1, 9, 11}, 4, {stride = 3, padding = 2, ceil_mode = true}},
    {"huge stride", {1, 2, 7, 9}, 3, {stride = {3, 200}, padding = 1, dilation = {1, 2}, ceil_mode = true}},
  }
  for _, c in ipairs(maxpool) do
    it("max_pool2d " .. c[1], function()
      gc.check(function(x) return av.max_pool2d(x, c[3], c[4]) end, {randn(table.unpack(c[2]))})
    end)
  end
  it("max_pool2d on a non-contiguous input", function()
    gc.check(function(x) return av.max_pool2d(x:transpose(3, 4), 3, {stride = 2, padding = 1}) end, {randn(1, 2, 6, 5)})
  end)
  local avgpool = {
    {"kernel 2", {2, 2, 6, 6}, 2, {}},
    {"kernel 3 stride 2 padding 1", {1, 2, 7, 7}, 3, {stride = 2, padding = 1}},
    {"count_include_pad = false", {1, 2, 7, 7}, 3, {stride = 2, padding = 1, count_include_pad = false}},
    {"ceil_mode", {1, 2, 6, 7}, 3, {stride = 2, ceil_mode = true}},
    {"ceil_mode, padding, no pad count", {1, 1, 8, 7}, 3, {stride = 2, padding = 1, ceil_mode = true, count_include_pad = false}},
    {"divisor_override", {1, 2, 5, 5}, 2, {stride = 1, divisor_override = 3}},
    {"pairs, unbatched", {2, 7, 6}, {3, 2}, {stride = {2, 1}, padding = {1, 1}}},
  }
  for _, c in ipairs(avgpool) do
    it("avg_pool2d " .. c[1], function()
      gc.check(function(x) return av.avg_pool2d(x, c[3], c[4]) end, {randn(table.unpack(c[2]))})
    end)
  end
  it("avg_pool2d on a non-contiguous input", function()
    gc.check(function(x) return av.avg_pool2d(x:transpose(3, 4), 2, {padding = 1}) end, {randn(1, 2, 5, 4)})
  end)
  for _, os in ipairs({1, 3, {2, 4}, {7, 5}}) do
    local label = type(os) == "table" and (os[1] .. "x" .. os[2]) or tostring(os)
    it("adaptive_avg_pool2d " .. label, function()
      gc.check(function(x) return av.adaptive_avg_pool2d(x, os) end, {randn(2, 2, 5, 7)})
      gc.check(function(x) return av.adaptive_avg_pool2d(x:transpose(2, 3), os) end, {randn(2, 7, 5)})
    end)
    it("adaptive_max_pool2d " .. label, function()
      gc.check(function(x) return av.adaptive_max_pool2d(x, os) end, {randn(2, 2, 5, 7)})
      gc.check(function(x) return av.adaptive_max_pool2d(x:transpose(2, 3), os) end, {randn(2, 7, 5)})
    end)
  end
  it("dropout (fixed seed)", function()
    gc.check(function(x)
      av.manual_seed(3)
      return av.dropout(x, {p = 0.3})
    end, {randn(4, 6)})
  end)
end)

-------------------------------------------------------------------------------
-- PyTorch parity: forward values and gradients
describe("parity with PyTorch", function()
  local function g_like(y) return av.randn(y:size(), {dtype = y:dtype()}) end

  -- batch norm
  for _, dt in ipairs({"float32", "float64"}) do
    local tol = dt == "float32" and 1e-4 or 1e-9
    local x = av.randn({8, 6, 5, 7}, {dtype = dt}) * 3 + 2
    local w, b = av.rand({6}, {dtype = dt}) + 0.5, av.randn({6}, {dtype = dt})
    local rm0, rv0 = av.randn({6}, {dtype = dt}), av.rand({6}, {dtype = dt}) + 0.5
    local rm, rv = rm0:clone(), rv0:clone()
    local f = function(x_, w_, b_) return av.batch_norm(x_, rm, rv, w_, b_, {training = true, momentum = 0.3, eps = 1e-4}) end
    local y = f(x, w, b)
    local g = g_like(y)
    rm, rv = rm0:clone(), rv0:clone()
    local r = vjp(f, {x, w, b}, g)
    parity.check("batch_norm training " .. dt,
      "vjp(lambda x, w, b: F.batch_norm(x, rm.clone(), rv.clone(), w, b, training=True, momentum=0.3, eps=1e-4), x, w, b, v=g)",
      {x = x, w = w, b = b, rm = rm0, rv = rv0, g = g}, r, {tol = tol})
    parity.check("batch_norm eval " .. dt,
      "vjp(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-3), x, w, b, v=g)",
      {x = x, w = w, b = b, rm = rm0, rv = rv0, g = g},
      vjp(function(x_, w_, b_) return av.batch_norm(x_, rm0, rv0, w_, b_, {eps = 1e-3}) end, {x, w, b}, g), {tol = tol})
  end
  do
    local x2, g2 = av.randn(32, 10) + 5, av.randn(32, 10)
    parity.check("batch_norm training (N, C)", "vjp(lambda x: F.batch_norm(x, None, None, training=True), x, v=g)",
      {x = x2, g = g2}, vjp(function(t) return av.batch_norm(t, nil, nil, nil, nil, {training = true}) end, {x2}, g2),
      {tol = 1e-4})
    local x2b, w2b, g2b = av.randn(300, 517) * 2 - 3, av.randn(517), av.randn(300, 517)
    parity.check("batch_norm training (N, C), threaded column blocks",
      "vjp(lambda x, w: F.batch_norm(x, None, None, w, None, training=True), x, w, v=g)", {x = x2b, w = w2b, g = g2b},
      vjp(function(t, w_) return av.batch_norm(t, nil, nil, w_, nil, {training = true}) end, {x2b, w2b}, g2b), {tol = 1e-4})
    local x3, g3 = av.randn(4, 5, 9), av.randn(4, 5, 9)
    parity.check("batch_norm training (N, C, L) no affine", "vjp(lambda x: F.batch_norm(x, None, None, training=True), x, v=g)",
      {x = x3, g = g3}, vjp(function(t) return av.batch_norm(t, nil, nil, nil, nil, {training = true}) end, {x3}, g3),
      {tol = 1e-4})
    -- a large mean relative to the spread: statistics must not cancel
    local x4, g4 = av.randn(16, 4, 8, 8) * 0.01 + 1000, av.randn(16, 4, 8, 8)
    parity.check("batch_norm training, mean >> std", "vjp(lambda x: F.batch_norm(x.double(), None, None, training=True).float(), x, v=g)",
      {x = x4, g = g4}, vjp(function(t) return av.batch_norm(t, nil, nil, nil, nil, {training = true}) end, {x4}, g4),
      {tol = 2e-4})
    local x5, w5 = av.randn(4, 6, 5, 3), av.randn(3)
    local g5 = av.randn(4, 3, 6, 5)
    parity.check("batch_norm training, non-contiguous input",
      "vjp(lambda x, w: F.batch_norm(x.permute(0, 3, 1, 2), None, None, w, None, training=True), x, w, v=g)",
      {x = x5, w = w5, g = g5},
      vjp(function(t, w_) return av.batch_norm(t:permute(1, 4, 2, 3), nil, nil, w_, nil, {training = true}) end, {x5, w5}, g5),
      {tol = 1e-4})
  end
  do -- running statistics after two training calls
    local xa, xb = av.randn(4, 3, 6, 6) * 2 + 1, av.randn(4, 3, 6, 6) - 1
    local rm, rv = av.zeros(3), av.ones(3)
    av.batch_norm(xa, rm, rv, nil, nil, {training = true, momentum = 0.1})
    av.batch_norm(xb, rm, rv, nil, nil, {training = true, momentum = 0.1})
    parity.check("batch_norm running stats after two training calls",
      "(lambda rm, rv: [F.batch_norm(xa, rm, rv, training=True, momentum=0.1), F.batch_norm(xb, rm, rv, training=True, momentum=0.1), rm, rv][2:])(torch.zeros(3), torch.ones(3))",
      {xa = xa, xb = xb}, {rm, rv}, {tol = 1e-5})
    local x1, rm1, rv1 = av.randn(10, 5), av.zeros(5), av.ones(5)
    av.batch_norm(x1, rm1, rv1, nil, nil, {training = true, momentum = 0.5})
    av.batch_norm(x1 * 2, rm1, rv1, nil, nil, {training = true, momentum = 0.5})
    parity.check("batch_norm running stats (N, C), momentum 0.5",
      "(lambda rm, rv: [F.batch_norm(x, rm, rv, training=True, momentum=0.5), F.batch_norm(x * 2, rm, rv, training=True, momentum=0.5), rm, rv][2:])(torch.zeros(5), torch.ones(5))",
      {x = x1}, {rm1, rv1}, {tol = 1e-5})
  end

  -- activations
  local act_cases = {
    {"leaky_relu", {}, "F.leaky_relu(x)"}, {"leaky_relu", {negative_slope = 0.2}, "F.leaky_relu(x, 0.2)"},
    {"elu", {}, "F.elu(x)"}, {"elu", {alpha = 0.7}, "F.elu(x, 0.7)"},
    {"gelu", {}, "F.gelu(x)"}, {"gelu", {approximate = "tanh"}, "F.gelu(x, approximate='tanh')"},
    {"silu", {}, "F.silu(x)"}, {"hardswish", {}, "F.hardswish(x)"}, {"hardsigmoid", {}, "F.hardsigmoid(x)"},
    {"relu6", {}, "F.relu6(x)"}, {"softplus", {}, "F.softplus(x)"},
    {"softplus", {beta = 2, threshold = 5}, "F.softplus(x, 2, 5)"},
  }
  for _, dt in ipairs({"float32", "float64"}) do
    -- random values plus the branch points of every activation
    local special = av.tensor({-30.0, -3, -1, 0, 1, 2.5, 3, 6, 10, 25, 0 / 0}, {dtype = dt})
    local x = av.cat({av.randn({300}, {dtype = dt}) * 4, special}, 1)
    local g = av.randn(x:size(), {dtype = dt})
    for _, c in ipairs(act_cases) do
      local r = vjp(function(t) return av[c[1]](t, c[2]) end, {x}, g)
      parity.check(c[3] .. " " .. dt, "vjp(lambda x: " .. c[3] .. ", x, v=g)", {x = x, g = g}, r,
        {tol = dt == "float32" and 1e-5 or 1e-7}) -- PyTorch's hardsigmoid gradient uses a float 1/6
    end
  end

  -- max pooling
  local mp = {
    {"k2", {2, 3, 8, 8}, 2, {}, "2"},
    {"k3 s2 p1", {2, 4, 9, 9}, 3, {stride = 2, padding = 1}, "3, 2, 1"},
    {"k3 s2 ceil", {2, 2, 8, 8}, 3, {stride = 2, ceil_mode = true}, "3, 2, ceil_mode=True"},
    {"k3 s2 p1 ceil", {1, 2, 10, 11}, 3, {stride = 2, padding = 1, ceil_mode = true}, "3, 2, 1, ceil_mode=True"},
    {"k3 d2 p1", {2, 2, 9, 10}, 3, {dilation = 2, padding = 1}, "3, 3, 1, 2"},
    {"k3 s1 d2 p1", {2, 2, 9, 10}, 3, {stride = 1, dilation = 2, padding = 1}, "3, 1, 1, 2"},
    {"k3 s2 d2 ceil", {1, 3, 12, 9}, 3, {stride = 2, dilation = 2, ceil_mode = true}, "3, 2, 0, 2, ceil_mode=True"},
    {"k(2,3) s(1,2) p(1,0)", {2, 2, 7, 9}, {2, 3}, {stride = {1, 2}, padding = {1, 0}}, "(2, 3), (1, 2), (1, 0)"},
    {"k4 s3 p2", {1, 2, 13, 13}, 4, {stride = 3, padding = 2}, "4, 3, 2"},
    {"k3 s1 p1", {1, 2, 6, 6}, 3, {stride = 1, padding = 1}, "3, 1, 1"},
    {"unbatched k2", {3, 6, 7}, 2, {}, "2"},
    {"batch 1 k3 s2 p1 (56x56)", {1, 8, 56, 56}, 3, {stride = 2, padding = 1}, "3, 2, 1"},
    {"k5 s5 (wide stride)", {2, 2, 11, 23}, 5, {stride = 5}, "5, 5"},
    {"k2 s4 (stride > kernel)", {2, 2, 11, 13}, 2, {stride = 4}, "2, 4"},
    {"k3 s(5,100) p1 (huge stride)", {2, 2, 11, 12}, 3, {stride = {5, 100}, padding = 1}, "3, (5, 100), 1"},
  }
  for _, dt in ipairs({"float32", "float64"}) do
    for _, c in ipairs(mp) do
      local x = av.randn(c[2], {dtype = dt})
      local opts = {return_indices = true}
      for k, v in pairs(c[4]) do opts[k] = v end
      local _, idx = av.max_pool2d(x, c[3], opts)
      local y = av.max_pool2d(x, c[3], c[4])
      local g = g_like(y)
      local r = vjp(function(t) return av.max_pool2d(t, c[3], c[4]) end, {x}, g)
      r[#r + 1] = idx
      parity.check("max_pool2d " .. c[1] .. " " .. dt,
        ("(lambda r, i: r + (i[1] + 1,))(vjp(lambda x: F.max_pool2d(x, %s), x, v=g), F.max_pool2d(x, %s, return_indices=True))")
          :format(c[5], c[5]), {x = x, g = g}, r)
    end
  end
  do
    -- non-contiguous input, NaN and -inf entries, repeated values (first maximum wins)
    local x = av.randn(2, 3, 9, 8)
    local g = av.randn(2, 3, 4, 5)
    local r = vjp(function(t) return av.max_pool2d(t:transpose(3, 4), 3, {stride = 2, padding = 1}) end, {x}, g)
    parity.check("max_pool2d non-contiguous", "vjp(lambda x: F.max_pool2d(x.transpose(2, 3), 3, 2, 1), x, v=g)",
      {x = x, g = g}, r)
    local xn = av.randn(2, 2, 8, 8)
    xn[{1, 1, 2, 3}] = 0 / 0
    xn[{1, 1, 5, 5}] = 0 / 0
    xn[{1, 1, 5, 6}] = 0 / 0
    xn[{2, 2, {1, 4}, {1, 4}}] = -math.huge
    xn[{2, 1}] = xn[{2, 1}]:round()
    local _, ni = av.max_pool2d(xn, 3, {stride = 2, padding = 1, return_indices = true})
    parity.check("max_pool2d with NaN, -inf and ties", "(lambda o, i: (o, i + 1))(*F.max_pool2d(x, 3, 2, 1, return_indices=True))",
      {x = xn}, {av.max_pool2d(xn, 3, {stride = 2, padding = 1}), ni})
    local _, ai = av.adaptive_max_pool2d(xn, 3, {return_indices = true})
    parity.check("adaptive_max_pool2d with NaN, -inf and ties",
      "(lambda o, i: (o, i + 1))(*F.adaptive_max_pool2d(x, 3, return_indices=True))", {x = xn},
      {av.adaptive_max_pool2d(xn, 3), ai})
  end

  -- average pooling
  local ap = {
    {"k2", {2, 3, 8, 8}, 2, {}, "2"},
    {"k3 s2 p1", {2, 2, 9, 9}, 3, {stride = 2, padding = 1}, "3, 2, 1"},
    {"k3 s2 p1 no pad count", {2, 2, 9, 10}, 3, {stride = 2, padding = 1, count_include_pad = false}, "3, 2, 1, count_include_pad=False"},
    {"k3 s2 ceil", {1, 2, 8, 8}, 3, {stride = 2, ceil_mode = true}, "3, 2, ceil_mode=True"},
    {"k3 s2 p1 ceil", {1, 2, 10, 11}, 3, {stride = 2, padding = 1, ceil_mode = true}, "3, 2, 1, ceil_mode=True"},
    {"k3 s2 p1 ceil no pad count", {1, 2, 10, 11}, 3, {stride = 2, padding = 1, ceil_mode = true, count_include_pad = false},
      "3, 2, 1, ceil_mode=True, count_include_pad=False"},
    {"divisor_override", {1, 2, 7, 7}, 3, {stride = 2, padding = 1, divisor_override = 4}, "3, 2, 1, divisor_override=4"},
    {"k(3,2) s(2,1) p(1,1)", {2, 2, 7, 6}, {3, 2}, {stride = {2, 1}, padding = {1, 1}}, "(3, 2), (2, 1), (1, 1)"},
    {"unbatched", {3, 7, 5}, 2, {stride = 1}, "2, 1"},
  }
  for _, dt in ipairs({"float32", "float64"}) do
    for _, c in ipairs(ap) do
      local x = av.randn(c[2], {dtype = dt})
      local g = g_like(av.avg_pool2d(x, c[3], c[4]))
      local r = vjp(function(t) return av.avg_pool2d(t, c[3], c[4]) end, {x}, g)
      parity.check("avg_pool2d " .. c[1] .. " " .. dt, ("vjp(lambda x: F.avg_pool2d(x, %s), x, v=g)"):format(c[5]),
        {x = x, g = g}, r, {tol = dt == "float32" and 1e-5 or 1e-10})
    end
  end
  do
    local x = av.randn(2, 2, 7, 9)
    local g = av.randn(2, 2, 5, 4)
    local r = vjp(function(t) return av.avg_pool2d(t:transpose(3, 4), 3, {stride = 2, padding = 1}) end, {x}, g)
    parity.check("avg_pool2d non-contiguous", "vjp(lambda x: F.avg_pool2d(x.transpose(2, 3), 3, 2, 1), x, v=g)",
      {x = x, g = g}, r)
  end

  -- adaptive pooling
  local ad = {
    {"1 from 7x7", {2, 4, 7, 7}, 1, "1"},
    {"1 from 4x4", {2, 6, 4, 4}, 1, "1"},
    {"3x5 from 7x9 (overlapping)", {2, 2, 7, 9}, {3, 5}, "(3, 5)"},
    {"4x4 from 10x10", {1, 3, 10, 10}, 4, "4"},
    {"5x7 from 3x4 (larger)", {1, 2, 3, 4}, {5, 7}, "(5, 7)"},
    {"unbatched 2x3 from 5x8", {3, 5, 8}, {2, 3}, "(2, 3)"},
  }
  for _, dt in ipairs({"float32", "float64"}) do
    for _, c in ipairs(ad) do
      local x = av.randn(c[2], {dtype = dt})
      local g = g_like(av.adaptive_avg_pool2d(x, c[3]))
      parity.check("adaptive_avg_pool2d " .. c[1] .. " " .. dt, ("vjp(lambda x: F.adaptive_avg_pool2d(x, %s), x, v=g)"):format(c[4]),
        {x = x, g = g}, vjp(function(t) return av.adaptive_avg_pool2d(t, c[3]) end, {x}, g),
        {tol = dt == "float32" and 1e-5 or 1e-10})
      local r = vjp(function(t) return av.adaptive_max_pool2d(t, c[3]) end, {x}, g)
      local _, idx = av.adaptive_max_pool2d(x, c[3], {return_indices = true})
      r[#r + 1] = idx
      parity.check("adaptive_max_pool2d " .. c[1] .. " " .. dt,
        ("(lambda r, i: r + (i[1] + 1,))(vjp(lambda x: F.adaptive_max_pool2d(x, %s), x, v=g), F.adaptive_max_pool2d(x, %s, return_indices=True))")
          :format(c[4], c[4]), {x = x, g = g}, r)
    end
  end

  parity.run()
end)
