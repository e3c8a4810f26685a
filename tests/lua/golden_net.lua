-- The golden network, shared by tests/lua/test_golden.lua and the memory
-- benchmark: a small ResNet-style model written functionally (stem conv-bn-
-- relu, max pool, an identity block, a strided block with a projection
-- shortcut, adaptive average pool, linear). tests/parity/golden.py is the
-- same network in PyTorch.
local av = require "aviary"
local F = require "aviary.nn.functional"

local M = {}

function M.available()
  for _, n in ipairs({"conv2d", "batch_norm", "max_pool2d", "adaptive_avg_pool2d", "linear", "cross_entropy"}) do
    if rawget(F, n) == nil then return false, n end
  end
  return true
end

-- parameters p and buffers buf, deterministic from the current seed
function M.init(classes, width)
  width = width or 16
  local p, buf = {}, {}
  local function conv(name, cin, cout, k)
    p[name .. ".conv"] = av.randn(cout, cin, k, k) * math.sqrt(2 / (cin * k * k))
    p[name .. ".bn_w"] = av.rand(cout) + 0.5
    p[name .. ".bn_b"] = av.randn(cout) * 0.1
    buf[name .. ".rm"] = av.zeros(cout)
    buf[name .. ".rv"] = av.ones(cout)
  end
  conv("stem", 3, width, 3); conv("b1c1", width, width, 3); conv("b1c2", width, width, 3)
  conv("b2c1", width, 2 * width, 3); conv("b2c2", 2 * width, 2 * width, 3); conv("b2sc", width, 2 * width, 1)
  p["fc.w"] = av.randn(classes, 2 * width) * 0.1
  p["fc.b"] = av.zeros(classes)
  return p, buf
end

local function conv_bn(p, buf, name, x, stride, padding)
  x = F.conv2d(x, p[name .. ".conv"], nil, {stride = stride or 1, padding = padding or 1})
  return F.batch_norm(x, buf[name .. ".rm"], buf[name .. ".rv"], p[name .. ".bn_w"], p[name .. ".bn_b"],
    {training = true, momentum = 0.1, eps = 1e-5})
end

function M.forward(p, buf, x)
  local h = F.relu(conv_bn(p, buf, "stem", x))
  h = F.max_pool2d(h, 3, {stride = 2, padding = 1})
  local y = F.relu(conv_bn(p, buf, "b1c1", h))
  y = conv_bn(p, buf, "b1c2", y)
  h = F.relu(y + h)
  y = F.relu(conv_bn(p, buf, "b2c1", h, 2))
  y = conv_bn(p, buf, "b2c2", y)
  local s = conv_bn(p, buf, "b2sc", h, 2, 0)
  h = F.relu(y + s)
  h = F.adaptive_avg_pool2d(h, 1):flatten(2)
  return F.linear(h, p["fc.w"], p["fc.b"])
end

return M
