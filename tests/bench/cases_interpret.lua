-- aviary.interpret against the same computation in PyTorch autograd: IntegratedGradients with 50
-- Gauss-Legendre steps on one 224x224 image through ResNet-50 (evaluate mode), the 50 interpolated images
-- in forward/backward batches of 10 (internal_batch_size = 10). PyTorch builds the same scaled batches,
-- runs forward and torch.autograd.grad with respect to the batch, and sums the steps.
-- Run alone: bin/aviary tests/bench/bench.lua --filter=IntegratedGradients
return function(case, av)
  local ok_models, models = pcall(require, "aviary.models")
  if not ok_models then return end
  local interpret = require "aviary.interpret"
  local BATCH = 10
  case("IntegratedGradients resnet50 50 steps 1x3x224x224 (batches of 10)", function()
    av.manual_seed(1)
    local model = models.create("resnet50"):evaluate()
    local x = av.randn(1, 3, 224, 224)
    local ig = interpret.IntegratedGradients(model)
    return function() return ig:attribute(x, {target = 1, n_steps = 50, internal_batch_size = BATCH}) end
  end, ([[
import torchvision, numpy as np
torch.manual_seed(1)
model = torchvision.models.resnet50().eval()
x = torch.randn(1, 3, 224, 224)
xs, ws = np.polynomial.legendre.leggauss(50)
alphas, steps = 0.5 * (1 + xs), 0.5 * ws
def ig(x, base, target, batch=%d):
    total = torch.zeros_like(x)
    for k0 in range(0, 50, batch):
        a = alphas[k0:k0 + batch]
        scaled = torch.cat([base + float(al) * (x - base) for al in a], 0).requires_grad_(True)
        out = model(scaled)
        g, = torch.autograd.grad(out[:, target].sum(), scaled)
        w = torch.tensor(steps[k0:k0 + batch], dtype=x.dtype).view(-1, 1, 1, 1)
        total += (g * w).sum(0, keepdim=True)
    return total * (x - base)
base = torch.zeros_like(x)]]):format(BATCH),
    "with torch.enable_grad():\n    ig(x, base, 0)", 2, 1, "one image, 50 steps")
end
