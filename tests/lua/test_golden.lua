-- The golden test: a small ResNet-style network (conv-bn-relu blocks with
-- residual adds, max pool, adaptive average pool, linear, cross-entropy),
-- written functionally here and in tests/parity/golden.py, with the same
-- weights and data. Logits, loss and every parameter gradient must agree to
-- 1e-4 relative, and 10 steps of SGD with momentum must give the same losses.
local av = require "aviary"
local F = require "aviary.nn.functional"

local function have_ops()
  for _, n in ipairs({"conv2d", "batch_norm", "max_pool2d", "adaptive_avg_pool2d", "linear", "cross_entropy"}) do
    if rawget(F, n) == nil then return false, n end
  end
  return true
end

local function conv_bn(p, buf, name, x, stride, padding)
  x = F.conv2d(x, p[name .. ".conv"], nil, {stride = stride or 1, padding = padding or 1})
  return F.batch_norm(x, buf[name .. ".rm"], buf[name .. ".rv"], p[name .. ".bn_w"], p[name .. ".bn_b"],
    {training = true, momentum = 0.1, eps = 1e-5})
end

local function forward(p, buf, x)
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

local function rel_err(a, b)
  return ((a:double() - b:double()):abs():max():item()) / (b:double():abs():max():item() + 1e-12)
end

describe("golden network", function()
  it("matches PyTorch: logits, loss, gradients and 10 SGD steps", function()
    local ok, missing = have_ops()
    if not ok then skip("operator " .. missing .. " is not available") end
    if not av_test.have_torch() then skip("python3-torch not installed") end
    av.manual_seed(20261129)
    local N, C = 8, 10
    local x = av.randn(N, 3, 32, 32)
    local target = av.randint(1, C + 1, {N})
    local p, buf = {}, {}
    local function conv(name, cin, cout, k)
      p[name .. ".conv"] = av.randn(cout, cin, k, k) * math.sqrt(2 / (cin * k * k))
      p[name .. ".bn_w"] = av.rand(cout) + 0.5
      p[name .. ".bn_b"] = av.randn(cout) * 0.1
      buf[name .. ".rm"] = av.zeros(cout)
      buf[name .. ".rv"] = av.ones(cout)
    end
    conv("stem", 3, 16, 3); conv("b1c1", 16, 16, 3); conv("b1c2", 16, 16, 3)
    conv("b2c1", 16, 32, 3); conv("b2c2", 32, 32, 3); conv("b2sc", 16, 32, 1)
    p["fc.w"] = av.randn(C, 32) * 0.1
    p["fc.b"] = av.zeros(C)

    local file = {x = x, target = target}
    for k, v in pairs(p) do file["p." .. k] = v end
    for k, v in pairs(buf) do file["b." .. k] = v:clone() end
    local fin, fout = av_test.tmpname(".in.safetensors"), av_test.tmpname(".out.safetensors")
    av.save(fin, file)
    local pyok, out = av_test.python(av_test.root .. "/tests/parity/golden.py", fin, fout)
    os.remove(fin)
    assert.truthy(pyok, out)
    local ref = av.load(fout)
    os.remove(fout)

    local names = {}
    for k in pairs(p) do names[#names + 1] = k; p[k]:requires_grad_(true) end
    table.sort(names)
    local mom = {}
    for _, k in ipairs(names) do mom[k] = av.zeros_like(p[k]) end
    local lr, m = 0.05, 0.9
    for step = 0, 9 do
      local logits = forward(p, buf, x)
      local loss = F.cross_entropy(logits, target)
      local params = {}
      for i, k in ipairs(names) do params[i] = p[k] end
      local grads = av.grad(loss, params)
      if step == 0 then
        assert.truthy(rel_err(logits, ref.logits) < 1e-4, "logits differ: " .. rel_err(logits, ref.logits))
        for i, k in ipairs(names) do
          local e = rel_err(grads[i], ref["grad." .. k])
          assert.truthy(e < 1e-4, ("gradient of %s differs by %.3g relative"):format(k, e))
        end
      end
      local want = ref["loss." .. step]:item()
      assert.near(loss:item(), want, 1e-4 * math.abs(want), "loss at step " .. step)
      av.no_grad(function()
        for i, k in ipairs(names) do
          mom[k]:mul_(m):add_(grads[i])
          p[k]:sub_(mom[k] * lr)
        end
      end)
    end
    for k, v in pairs(buf) do
      local e = rel_err(v, ref["buf." .. k])
      assert.truthy(e < 1e-4, ("running statistic %s differs by %.3g relative"):format(k, e))
    end
  end)
end)
