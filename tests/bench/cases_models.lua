-- Whole-model benchmarks against torchvision on the same thread count:
-- a training step (forward, cross-entropy, backward, SGD momentum step) of
-- ResNet-18 and ResNet-50 at batch 16 and 3x112x112 with 200 classes, and
-- ResNet-18 inference (evaluate mode, no grad) at batch 16 and 224x224.
return function(case, av)
  local ok_models, models = pcall(require, "aviary.models")
  if not ok_models then return end
  local optim = require "aviary.optim"
  local F = require "aviary.nn.functional"

  for _, name in ipairs({"resnet18", "resnet50"}) do
    case(name .. " train step b16 3x112x112", function()
      av.manual_seed(1)
      local model = models.create(name, {num_classes = 200})
      model:train()
      local opt = optim.SGD(model:parameters(), {lr = 1e-3, momentum = 0.9})
      local x, y = av.randn(16, 3, 112, 112), av.randint(1, 201, {16})
      return function()
        opt:zero_grad()
        local loss = F.cross_entropy(model(x), y)
        loss:backward()
        opt:step()
      end
    end, ("import torchvision\ntorch.manual_seed(1)\nmodel = torchvision.models.%s(num_classes=200).train()\n"
      .. "opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)\n"
      .. "x = torch.randn(16, 3, 112, 112); y = torch.randint(0, 200, (16,))"):format(name),
      "with torch.enable_grad():\n    opt.zero_grad()\n    loss = F.cross_entropy(model(x), y)\n"
      .. "    loss.backward()\n    opt.step()", 5, 1, "16 images")
  end

  case("resnet18 inference b16 3x224x224", function()
    av.manual_seed(1)
    local model = models.create("resnet18", {num_classes = 200}):evaluate()
    local x = av.randn(16, 3, 224, 224)
    return function() return av.no_grad(function() return model(x) end) end
  end, "import torchvision\ntorch.manual_seed(1)\nmodel = torchvision.models.resnet18(num_classes=200).eval()\n"
    .. "x = torch.randn(16, 3, 224, 224)", "model(x)", 5, 1, "16 images")
end
