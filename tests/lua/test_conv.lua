-- 2-d convolution: argument forms, errors, gradient checks in float64 and
-- parity with PyTorch (forward and the three gradients) in float32, on
-- ResNet-like layers at small batch and on the shapes that exercise each
-- kernel path (1x1 without im2col, tiles spanning images, column splits
-- between threads, depthwise, groups).
local av = require "aviary"
local parity = require "parity"
local gradcheck = require "gradcheck"

av.manual_seed(2024)

local function randn(...) return av.randn({...}) end
local function randn64(...) return av.randn({...}, {dtype = "float64"}) end

-- torch keyword arguments for the same options
local function pyargs(o)
  o = o or {}
  local function pair(v, def)
    if v == nil then return def end
    if type(v) == "table" then return ("(%d, %d)"):format(v[1], v[2]) end
    if type(v) == "string" then return ("'%s'"):format(v) end
    return tostring(v)
  end
  return ("stride=%s, padding=%s, dilation=%s, groups=%d"):format(pair(o.stride, "1"), pair(o.padding, "0"),
    pair(o.dilation, "1"), o.groups or 1)
end

-- forward and all three gradients against torch (vjp with a random output gradient)
local function check_all(name, x, w, b, opts, tol)
  local xr, wr = x:detach():requires_grad_(true), w:detach():requires_grad_(true)
  local br = b and b:detach():requires_grad_(true) or nil
  local y = av.conv2d(xr, wr, br, opts)
  local g = av.randn(y:size(), {dtype = y:dtype()})
  local inputs = {xr, wr}
  if br then inputs[3] = br end
  local grads = av.grad(y, inputs, {grad_outputs = g})
  local res = {y:detach(), grads[1], grads[2]}
  if br then res[4] = grads[3] end
  local expr
  if b then
    expr = ("vjp(lambda x, w, b: F.conv2d(x, w, b, %s), x, w, b, v=g)"):format(pyargs(opts))
  else
    expr = ("vjp(lambda x, w: F.conv2d(x, w, None, %s), x, w, v=g)"):format(pyargs(opts))
  end
  parity.check(name, expr, {x = x:contiguous(), w = w, b = b, g = g}, res, {tol = tol or 1e-4})
end

describe("argument forms", function()
  it("options: integers, pairs, 'same', 'valid'; bias optional; options as argument 3", function()
    local x, w = randn(2, 3, 9, 8), randn(4, 3, 3, 3)
    assert.same(av.conv2d(x, w):size(), {2, 4, 7, 6})
    assert.same(av.conv2d(x, w, nil, {padding = 1}):size(), {2, 4, 9, 8})
    assert.same(av.conv2d(x, w, {padding = 1}):size(), {2, 4, 9, 8})
    assert.same(av.conv2d(x, w, nil, {stride = 2, padding = {1, 0}}):size(), {2, 4, 5, 3})
    assert.same(av.conv2d(x, w, nil, {stride = {1, 2}}):size(), {2, 4, 7, 3})
    assert.same(av.conv2d(x, w, nil, {dilation = 2}):size(), {2, 4, 5, 4})
    assert.same(av.conv2d(x, w, nil, {padding = "same"}):size(), {2, 4, 9, 8})
    assert.same(av.conv2d(x, w, nil, {padding = "same", dilation = {2, 3}}):size(), {2, 4, 9, 8})
    assert.same(av.conv2d(x, randn(4, 3, 2, 4), nil, {padding = "same"}):size(), {2, 4, 9, 8})
    assert.same(av.conv2d(x, w, nil, {padding = "valid"}):size(), {2, 4, 7, 6})
    local b = randn(4)
    local y = av.conv2d(x, w, b)
    assert.tensor_near(y, av.conv2d(x, w) + b:view(1, 4, 1, 1), 1e-5)
  end)
  it("a 3-d input is one unbatched image and gives a 3-d result", function()
    local x, w, b = randn(3, 6, 5), randn(2, 3, 3, 3), randn(2)
    local y = av.conv2d(x, w, b, {padding = 1})
    assert.same(y:size(), {2, 6, 5})
    assert.tensor_near(y, av.conv2d(x:unsqueeze(1), w, b, {padding = 1}):squeeze(1), 1e-6)
  end)
  it("records one ConvolutionBackward node; gradients only for inputs that need them", function()
    local x, w, b = randn(2, 3, 5, 5), randn(4, 3, 3, 3):requires_grad_(true), randn(4)
    local y = av.conv2d(x, w, b)
    assert.equal(y.grad_fn, "ConvolutionBackward")
    y:sum():backward()
    assert.same(w.grad:size(), {4, 3, 3, 3})
    assert.equal(x.grad, nil)
    assert.equal(b.grad, nil)
    assert.equal(av.conv2d(x, w:detach()).grad_fn, nil)
    av.no_grad(function() assert.equal(av.conv2d(x, w).grad_fn, nil) end)
  end)
  it("a zero-size batch gives an empty result and zero gradients", function()
    local x, w, b = randn(0, 3, 5, 5):requires_grad_(true), randn(4, 3, 3, 3):requires_grad_(true), randn(4):requires_grad_(true)
    local y = av.conv2d(x, w, b)
    assert.same(y:size(), {0, 4, 3, 3})
    y:sum():backward()
    assert.same(x.grad:size(), {0, 3, 5, 5})
    assert.tensor_near(w.grad, av.zeros(4, 3, 3, 3))
    assert.tensor_near(b.grad, av.zeros(4))
  end)
end)

describe("algorithm choice", function()
  it("conv2d_algorithm reports and sets the CPU kernel family", function()
    local before = av.conv2d_algorithm()
    assert.equal(av.conv2d_algorithm("im2col"), before)
    assert.equal(av.conv2d_algorithm(), "im2col")
    av.conv2d_algorithm("auto")
    assert.error_matches(function() return av.conv2d_algorithm("fft") end, "unknown algorithm 'fft'")
    av.conv2d_algorithm(before)
  end)
  it("auto gives the same result as im2col on a shape big enough for a trial", function()
    local before = av.conv2d_algorithm()
    local x, w, b = randn(4, 32, 20, 20), randn(32, 32, 3, 3), randn(32)
    av.conv2d_algorithm("im2col")
    local ref = av.conv2d(x, w, b, {padding = 1})
    av.conv2d_algorithm("auto")
    for _ = 1, 2 do -- the first call of a shape runs the trial, the second the pick
      assert.tensor_near(av.conv2d(x, w, b, {padding = 1}), ref, 1e-4)
    end
    av.conv2d_algorithm(before)
  end)
end)

describe("errors", function()
  local x, w = randn(2, 4, 5, 5), randn(6, 4, 3, 3)
  it("input and weight dimensions", function()
    assert.error_matches(function() return av.conv2d(randn(4, 5), w) end, "3-d (unbatched) or 4-d")
    assert.error_matches(function() return av.conv2d(randn(1, 2, 4, 5, 5), w) end, "got size 1x2x4x5x5")
    assert.error_matches(function() return av.conv2d(x, randn(6, 4, 3)) end, "4-d weight")
  end)
  it("channels and groups", function()
    assert.error_matches(function() return av.conv2d(x, randn(6, 3, 3, 3)) end,
      "weight of size 6x3x3x3 with groups=1 expects input with 3 channels, but input of size 2x4x5x5 has 4 channels")
    assert.error_matches(function() return av.conv2d(x, randn(6, 1, 3, 3), nil, {groups = 3}) end,
      "input channels (4, input of size 2x4x5x5) must be divisible by groups (3)")
    assert.error_matches(function() return av.conv2d(x, randn(5, 2, 3, 3), nil, {groups = 2}) end,
      "output channels (5, weight of size 5x2x3x3) must be divisible by groups (2)")
    assert.error_matches(function() return av.conv2d(x, w, nil, {groups = 0}) end, "groups must be positive")
  end)
  it("kernel larger than the padded input", function()
    assert.error_matches(function() return av.conv2d(x, randn(6, 4, 7, 7)) end,
      "kernel size 7x7 (dilated) is larger than the padded input 5x5")
    assert.error_matches(function() return av.conv2d(x, w, nil, {dilation = 3}) end,
      "kernel size 7x7 (dilated) is larger than the padded input 5x5")
    assert.same(av.conv2d(x, randn(6, 4, 7, 7), nil, {padding = 1}):size(), {2, 6, 1, 1})
  end)
  it("bias, stride, dilation, padding, dtype", function()
    assert.error_matches(function() return av.conv2d(x, w, randn(5)) end,
      "bias of size 5 does not match the 6 output channels")
    assert.error_matches(function() return av.conv2d(x, w, randn(6, 1)) end, "bias of size 6x1")
    assert.error_matches(function() return av.conv2d(x, w, nil, {stride = 0}) end, "stride must be positive, got (0, 0)")
    assert.error_matches(function() return av.conv2d(x, w, nil, {stride = {1, -2}}) end, "stride must be positive")
    assert.error_matches(function() return av.conv2d(x, w, nil, {dilation = {0, 1}}) end, "dilation must be positive")
    assert.error_matches(function() return av.conv2d(x, w, nil, {padding = -1}) end, "padding must be non-negative")
    assert.error_matches(function() return av.conv2d(x, w:double()) end, "weight has dtype float64 but the input has dtype float32")
    assert.error_matches(function() return av.conv2d(x, w, randn(6):double()) end, "bias has dtype float64")
    assert.error_matches(function() return av.conv2d(x:long(), w:long()) end, "float32 or float64")
  end)
  it("options", function()
    assert.error_matches(function() return av.conv2d(x, w, nil, {strides = 2}) end, "unknown option 'strides'")
    assert.error_matches(function() return av.conv2d(x, w, nil, {stride = 1.5}) end, "option 'stride' must be an integer")
    assert.error_matches(function() return av.conv2d(x, w, nil, {stride = {1, 2, 3}}) end, "option 'stride'")
    assert.error_matches(function() return av.conv2d(x, w, nil, {padding = "full"}) end, "'same' or 'valid'")
    assert.error_matches(function() return av.conv2d(x, w, nil, {padding = "same", stride = 2}) end,
      "padding='same' is not supported for strided convolutions")
    assert.error_matches(function() return av.conv2d(x, w, 5) end, "argument 3")
    assert.error_matches(function() return av.conv2d(x) end, "argument 2")
    assert.error_matches(function() return av.conv2d(x, w, nil, {}, 1) end, "unexpected argument 5")
  end)
  it("conv2d_input and conv2d_weight check grad_output", function()
    local g = randn(2, 6, 3, 3)
    assert.error_matches(function() return av.conv2d_input({2, 4, 5, 5}, w, randn(2, 6, 4, 3)) end,
      "grad_output of size 2x6x4x3, expected 2x6x3x3")
    assert.error_matches(function() return av.conv2d_weight(x, {6, 4, 3}, g) end, "4-d weight size")
    assert.error_matches(function() return av.conv2d_input({2, 4, 5, 5}, w, g:double()) end, "grad_output has dtype float64")
  end)
end)

describe("gradient checks (float64)", function()
  local configs = {
    {"plain 3x3", {2, 3, 5, 6}, {4, 3, 3, 3}, true, {}},
    {"stride 2, padding 1", {2, 2, 7, 6}, {3, 2, 3, 3}, true, {stride = 2, padding = 1}},
    {"stride {1,2}, padding {2,0}, no bias", {1, 2, 5, 7}, {2, 2, 3, 2}, false, {stride = {1, 2}, padding = {2, 0}}},
    {"dilation 2, padding 'same'", {1, 2, 7, 7}, {3, 2, 3, 3}, true, {dilation = 2, padding = "same"}},
    {"even kernel, padding 'same'", {2, 2, 5, 6}, {2, 2, 4, 2}, true, {padding = "same"}},
    {"groups 2", {2, 4, 5, 5}, {6, 2, 3, 3}, true, {groups = 2, padding = 1}},
    {"depthwise", {2, 3, 6, 5}, {3, 1, 3, 3}, true, {groups = 3, padding = 1, stride = 2}},
    {"depthwise with multiplier 2", {1, 2, 5, 5}, {4, 1, 3, 2}, false, {groups = 2, dilation = {1, 2}}},
    {"1x1", {2, 5, 3, 4}, {3, 5, 1, 1}, true, {}},
    {"1x1 stride 2", {2, 3, 5, 5}, {4, 3, 1, 1}, false, {stride = 2}},
    {"batch 1, odd sizes, stride 3", {1, 3, 11, 7}, {2, 3, 5, 3}, true, {stride = 3, padding = {2, 1}}},
    {"7x7 stride 2 padding 3", {1, 2, 9, 9}, {2, 2, 7, 7}, false, {stride = 2, padding = 3}},
  }
  for _, c in ipairs(configs) do
    it(c[1], function()
      local x, w = randn64(table.unpack(c[2])), randn64(table.unpack(c[3]))
      local inputs = {x, w}
      if c[4] then inputs[3] = randn64(c[3][1]) end
      gradcheck.check(function(a, b, bias) return av.conv2d(a, b, bias, c[5]) end, inputs)
    end)
  end
  it("non-contiguous input", function()
    local x, w = randn64(2, 5, 6, 3), randn64(2, 3, 3, 3)
    assert.falsy(x:permute(1, 4, 3, 2):is_contiguous())
    gradcheck.check(function(a, b) return av.conv2d(a:permute(1, 4, 3, 2), b, nil, {padding = 1}) end, {x, w})
  end)
  it("unbatched 3-d input", function()
    gradcheck.check(function(a, b) return av.conv2d(a, b, nil, {padding = 1}) end, {randn64(2, 4, 5), randn64(3, 2, 3, 3)})
  end)
  it("second use of the input in the graph accumulates", function()
    gradcheck.check(function(a, b) return av.conv2d(a, b, nil, {padding = 1}) + a:sum() end,
      {randn64(1, 2, 4, 4), randn64(2, 2, 3, 3)})
  end)
end)

describe("PyTorch parity (float32)", function()
  -- {name, input size, weight size, bias, options}
  local configs = {
    {"resnet stem 3->16 7x7 s2 p3", {2, 3, 32, 32}, {16, 3, 7, 7}, false, {stride = 2, padding = 3}},
    {"resnet 3x3 16->16 p1", {2, 16, 14, 14}, {16, 16, 3, 3}, false, {padding = 1}},
    {"resnet 3x3 s2 16->32", {2, 16, 14, 14}, {32, 16, 3, 3}, false, {stride = 2, padding = 1}},
    {"resnet 1x1 s2 downsample", {2, 16, 14, 14}, {32, 16, 1, 1}, false, {stride = 2}},
    {"bottleneck 1x1 64->16", {3, 64, 7, 7}, {16, 64, 1, 1}, false, {}},
    {"bottleneck 1x1 16->64 with bias", {3, 16, 7, 7}, {64, 16, 1, 1}, true, {}},
    {"3x3 at 4x4, batch 4", {4, 32, 4, 4}, {32, 32, 3, 3}, true, {padding = 1}},
    {"resnext groups 8", {2, 32, 9, 9}, {32, 4, 3, 3}, false, {groups = 8, padding = 1}},
    {"depthwise 3x3 s2", {2, 24, 11, 11}, {24, 1, 3, 3}, true, {groups = 24, stride = 2, padding = 1}},
    {"dilation 2 'same'", {2, 8, 10, 9}, {6, 8, 3, 3}, true, {dilation = 2, padding = "same"}},
    {"even kernel 'same'", {1, 4, 8, 7}, {5, 4, 4, 2}, true, {padding = "same"}},
    {"batch 1, odd sizes, stride {2,3}", {1, 5, 17, 13}, {7, 5, 3, 4}, true, {stride = {2, 3}, padding = {1, 2}}},
    {"1x1 stride 3 with padding", {2, 6, 10, 10}, {4, 6, 1, 1}, true, {stride = 3, padding = 1}},
    {"kernel as large as the padded input (1x1 output)", {2, 3, 5, 5}, {4, 3, 7, 7}, true, {padding = 1}},
  }
  -- every kernel family the build has: im2col always, oneDNN in builds with it
  local before = av.conv2d_algorithm()
  local algos = {"im2col"}
  if pcall(av.conv2d_algorithm, "onednn") then algos[2] = "onednn" end
  for _, algo in ipairs(algos) do
    av.conv2d_algorithm(algo)
    for _, c in ipairs(configs) do
      check_all(c[1] .. ", " .. algo, randn(table.unpack(c[2])), randn(table.unpack(c[3])),
        c[4] and randn(c[3][1]) or nil, c[5])
    end
    -- a transposed (non-contiguous) input
    check_all("non-contiguous input, " .. algo, randn(2, 9, 8, 6):transpose(2, 4), randn(4, 6, 3, 3), randn(4),
      {padding = 1})
  end
  av.conv2d_algorithm(before)
  -- float64 through the same kernels
  check_all("float64 3x3 s2", randn64(2, 6, 9, 9), randn64(5, 6, 3, 3), randn64(5), {stride = 2, padding = 1}, 1e-10)
  -- torch.nn.grad's functions
  local x, w = randn(2, 8, 9, 9), randn(6, 4, 3, 3)
  local o = {stride = 2, padding = 1, groups = 2}
  local g = randn(2, 6, 5, 5)
  parity.check("conv2d_input", "torch.nn.grad.conv2d_input((2, 8, 9, 9), w, g, stride=2, padding=1, groups=2)",
    {w = w, g = g}, av.conv2d_input({2, 8, 9, 9}, w, g, o), {tol = 1e-4})
  parity.check("conv2d_weight", "torch.nn.grad.conv2d_weight(x, (6, 4, 3, 3), g, stride=2, padding=1, groups=2)",
    {x = x, g = g}, av.conv2d_weight(x, {6, 4, 3, 3}, g, o), {tol = 1e-4})
  parity.run()
end)

-- the CPU kernels split work between threads by columns (images x pixels) and
-- tile long rows; these shapes land on each split, with 1, 2 and 3 threads
describe("thread splits (PyTorch parity)", function()
  local configs = {
    {"many small images (tiles across images)", {9, 24, 4, 4}, {20, 24, 3, 3}, true, {padding = 1}},
    {"1x1 on small images (gathered columns)", {7, 40, 3, 3}, {24, 40, 1, 1}, true, {}},
    {"one big image (column split)", {1, 8, 40, 36}, {12, 8, 3, 3}, true, {padding = 1}},
    {"one big image 1x1 (column split, no im2col)", {1, 16, 30, 30}, {8, 16, 1, 1}, false, {}},
    {"odd batch 1x1 stride 2 (split inside an image)", {3, 16, 21, 21}, {8, 16, 1, 1}, false, {stride = 2}},
    {"odd batch 5x5", {3, 6, 23, 19}, {10, 6, 5, 5}, true, {padding = 2, stride = {1, 2}}},
    {"large weight, few columns (rows of dW and channels of dx split)", {2, 128, 4, 4}, {256, 128, 3, 3}, true,
      {padding = 1}},
    {"large 1x1 weight, few columns", {3, 512, 3, 3}, {600, 512, 1, 1}, false, {}},
    {"large 1x1 weight, one image read in place", {1, 512, 16, 16}, {600, 512, 1, 1}, true, {}},
    {"2x2 stride 2 (disjoint windows, split inside an image)", {3, 4, 10, 10}, {6, 4, 2, 2}, true, {stride = 2}},
  }
  local saved = av.get_num_threads()
  for _, t in ipairs({1, 2, 3}) do
    av.set_num_threads(t)
    for _, c in ipairs(configs) do
      check_all(("%s, %d threads"):format(c[1], t), randn(table.unpack(c[2])), randn(table.unpack(c[3])),
        c[4] and randn(c[3][1]) or nil, c[5])
    end
  end
  av.set_num_threads(saved)
  parity.run()
end)

describe("NaN inputs", function()
  it("propagate through forward and backward without a crash, on every algorithm", function()
    local prev = av.conv2d_algorithm()
    for _, algo in ipairs({"im2col", "onednn", "auto"}) do
      local ok = pcall(av.conv2d_algorithm, algo)
      if ok then
        local x = av.randn(2, 3, 8, 8)
        x[1][2][4][5] = 0 / 0
        local w = av.randn(4, 3, 3, 3, {requires_grad = true})
        local y = av.conv2d(x, w, nil, {padding = 1})
        assert.truthy(y[1][1][4][5] ~= y[1][1][4][5], algo .. ": the output next to the NaN is NaN")
        assert.truthy(y[2]:isnan():sum():item() == 0, algo .. ": the other image stays finite")
        y:sum():backward()
        assert.truthy(w.grad:isnan():sum():item() > 0, algo .. ": the weight gradient sees the NaN")
      end
    end
    av.conv2d_algorithm(prev)
  end)
end)
