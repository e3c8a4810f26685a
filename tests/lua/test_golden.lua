-- The golden test: a small ResNet-style network (conv-bn-relu blocks with
-- residual adds, max pool, adaptive average pool, linear, cross-entropy),
-- written functionally here and in tests/parity/golden.py, with the same
-- weights and data. Logits, loss and every parameter gradient must agree to
-- 1e-4 relative, and 10 steps of SGD with momentum must give the same losses.
local av = require "aviary"
local F = require "aviary.nn.functional"
local net = require "golden_net"

local function rel_err(a, b)
  return ((a:double() - b:double()):abs():max():item()) / (b:double():abs():max():item() + 1e-12)
end

describe("golden network", function()
  it("matches PyTorch: logits, loss, gradients and 10 SGD steps", function()
    local ok, missing = net.available()
    if not ok then skip("operator " .. missing .. " is not available") end
    if not av_test.have_torch() then skip("python3-torch not installed") end
    av.manual_seed(20261129)
    local N, C = 8, 10
    local x = av.randn(N, 3, 32, 32)
    local target = av.randint(1, C + 1, {N})
    local p, buf = net.init(C)

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
      local logits = net.forward(p, buf, x)
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
