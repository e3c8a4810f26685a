-- aviary.inference: models compiled into oneDNN inference plans give the same outputs as the
-- op-by-op evaluation forward (which test_models and test_onnx check against PyTorch and ONNX
-- Runtime), for every architecture family, batch size and the imported-graph path; and the
-- errors for misuse.
local av = require "aviary"
local models = require "aviary.models"
local onnx = require "aviary.onnx"
local image = require "aviary.image"
local inference = require "aviary.inference"

local root = av_test.root

local function need_plans() if not inference.available() then skip("this build has no oneDNN") end end

local function rel_err(a, b)
  return (a:double() - b:double()):abs():max():item() / math.max(b:abs():max():item(), 1e-12)
end

local function eager(net, x) return av.no_grad(function() return net(x) end) end

-- 3 real photographs at `size`, normalised as torchvision's eval transform
local function photos(size)
  local list = {}
  for _, n in ipairs({"chicken.jpg", "eagle.jpg", "giraffe.jpg"}) do
    local img = image.load(root .. "/../shared/photos/" .. n, {channels = 3})
    img = image.center_crop(image.resize(img, size), size)
    list[#list + 1] = image.to_float(img, {mean = image.IMAGENET_MEAN, std = image.IMAGENET_STD})
  end
  return av.stack(list, 1)
end

-- BN statistics that are not the identity, so that folding them is really tested
local function randomise_bn(net)
  av.manual_seed(7)
  av.no_grad(function()
    for _, m in ipairs(net:modules()) do
      if m.running_mean then
        m.running_mean:copy_(av.randn(m.running_mean:size(1)) * 0.1)
        m.running_var:copy_(av.rand(m.running_var:size(1)) + 0.5)
        if m.weight then m.weight:copy_(av.rand(m.weight:size(1)) + 0.5) end
        if m.bias then m.bias:copy_(av.randn(m.bias:size(1)) * 0.1) end
      end
    end
  end)
end

describe("inference.compile", function()
  it("is available in this build (oneDNN)", function()
    need_plans()
    assert.truthy(inference.available())
  end)

  it("ResNet-18: batch norm folded, ReLU and residual adds fused, one plan; equal to eager on photos", function()
    need_plans()
    av.manual_seed(1)
    local net = models.create("resnet18", {num_classes = 10})
    randomise_bn(net)
    net:evaluate()
    local x = photos(64)
    local fast = inference.compile(net, x)
    local s = fast.stats
    assert.equal(s.folded_bn, 20)
    assert.equal(s.fused_add, 8)
    assert.equal(s.fused_relu, 17)
    assert.equal(s.segments, 1)
    assert.equal(s.eager, 2) -- flatten and the classifier
    local y = fast(x)
    assert.same(y:size(), {3, 10})
    assert.truthy(rel_err(y, eager(net, x)) < 1e-4, "compiled vs eager")
  end)

  it("runs any batch size, rebuilding its primitives when the shape changes", function()
    need_plans()
    av.manual_seed(2)
    local net = models.create("resnet18", {num_classes = 5})
    randomise_bn(net)
    net:evaluate()
    local fast = inference.compile(net, av.randn(1, 3, 48, 48))
    for _, n in ipairs({2, 5, 1, 2}) do
      local x = av.randn(n, 3, 48, 48)
      assert.truthy(rel_err(fast(x), eager(net, x)) < 1e-4, "batch " .. n)
    end
    local x = av.randn(2, 3, 80, 64) -- another image size
    assert.truthy(rel_err(fast(x), eager(net, x)) < 1e-4, "80x64")
  end)

  for _, case in ipairs({
    {"mobilenet_v2", 64}, {"googlenet", 64}, {"densenet121", 64}, {"vgg11_bn", 32}, {"resnext50_32x4d", 64},
  }) do
    local name, size = case[1], case[2]
    it(name .. " (grouped/depthwise convs, concat, ceil-mode pooling, classifier ReLUs): equal to eager", function()
      need_plans()
      av.manual_seed(3)
      local net = models.create(name, {num_classes = 7})
      randomise_bn(net)
      net:evaluate()
      local x = av.randn(2, 3, size, size)
      local fast = inference.compile(net, x)
      assert.truthy(fast.stats.planned > 0, "some nodes planned")
      if name == "mobilenet_v2" then -- ReLU6 becomes a clip post-op: one plan for the whole feature extractor
        assert.equal(fast.stats.fused_clip, 35)
        assert.equal(fast.stats.segments, 1)
      end
      assert.truthy(rel_err(fast(x), eager(net, x)) < 1e-4, name)
    end)
  end

  it("compiles a graph loaded from ONNX without an example input", function()
    need_plans()
    av.manual_seed(4)
    local net = models.create("resnet18", {num_classes = 6})
    randomise_bn(net)
    net:evaluate()
    local path = av_test.tmpname(".onnx")
    onnx.export(net, av.randn(1, 3, 64, 64), path)
    local g = onnx.load(path)
    os.remove(path)
    local fast = inference.compile(g)
    assert.equal(fast.stats.folded_bn, 20)
    local x = photos(64)
    assert.truthy(rel_err(fast(x), eager(net, x)) < 1e-4)
  end)

  it("is a snapshot: later weight changes do not reach it, and it refuses training mode", function()
    need_plans()
    av.manual_seed(5)
    local net = models.create("resnet18", {num_classes = 4})
    net:evaluate()
    local x = av.randn(1, 3, 48, 48)
    local fast = inference.compile(net, x)
    local before = fast(x)
    av.no_grad(function() net.fc.weight:mul_(2) end)
    assert.truthy(rel_err(fast(x), before) == 0)
    assert.error_matches(function() fast:train() end, "only runs inference")
    assert.truthy(not net.training, "compiling left the model in evaluation mode")
  end)

  it("errors name the problem", function()
    need_plans()
    av.manual_seed(6)
    local net = models.create("resnet18", {num_classes = 3})
    net:evaluate()
    assert.error_matches(function() inference.compile("resnet18") end, "expected a module")
    assert.error_matches(function() inference.compile(net) end, "an example input tensor is needed")
    local fast = inference.compile(net, av.randn(1, 3, 32, 32))
    assert.error_matches(function() fast(av.randn(1, 4, 32, 32)) end, "expects 3 input channels")
    assert.error_matches(function() fast(av.randn(3, 32, 32)) end, "4-d float32")
    assert.error_matches(function() fast() end, "input 1")
  end)

  it("the plan binding checks its arguments", function()
    need_plans()
    local P = require("aviary.core")._infer
    local p = P.new()
    local x = p:input()
    assert.error_matches(function() p:conv(x + 5, av.randn(4, 3, 3, 3), nil, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 1) end,
      "plan has values")
    assert.error_matches(function() p:conv(x, av.randn(4, 3, 3), nil, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 1) end, "4-d float32 weight")
    assert.error_matches(function() p:conv(x, av.randn(4, 3, 3, 3), nil, {0, 1}, {1, 1}, {1, 1}, {1, 1}, 1) end, "stride")
    assert.error_matches(function() p:conv(x, av.randn(4, 3, 3, 3), av.randn(5), {1, 1}, {1, 1}, {1, 1}, {1, 1}, 1) end,
      "bias of 4")
    assert.error_matches(function() p:pool(x, 3, {2, 2}, {2, 2}, {0, 0}, {0, 0}) end, "kind must be")
    local y = p:conv(x, av.randn(4, 3, 3, 3), nil, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 1, nil, true)
    p:output(y)
    assert.error_matches(function() p:run(av.randn(1, 3, 8, 8), av.randn(1, 3, 8, 8)) end, "expected 1 inputs")
    assert.error_matches(function() p:run(av.randn(1, 3, 8, 8):double()) end, "float32")
    local out = p:run(av.randn(2, 3, 8, 8))
    assert.same(out:size(), {2, 4, 8, 8})
    assert.truthy(out:min():item() >= 0, "ReLU applied")
    local c = P.new()
    c:output(c:clip(c:input(), -0.5, 0.5))
    local cx = av.randn(1, 2, 3, 3) * 3
    assert.tensor_near(c:run(cx), cx:clamp(-0.5, 0.5), 1e-7)
    assert.error_matches(function() c:fuse_clip(0, 0, 6) end, "needs a convolution or an add")
    assert.error_matches(function() c:clip(0, 1, -1) end, "lo <= hi")
    local q = P.new()
    q:output(q:pool(q:input(), 0, {5, 5}, {1, 1}, {0, 0}, {0, 0}))
    assert.error_matches(function() q:run(av.randn(1, 2, 3, 3)) end, "smaller than the kernel")
  end)
end)
