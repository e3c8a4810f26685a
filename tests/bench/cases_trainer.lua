-- The Trainer's overhead (docs/training.md: under 3% over a bare loop): one epoch of ResNet-18
-- at batch 16 and 3x112x112 (4 batches from memory, 200 classes) through train.Trainer — events,
-- per-batch metrics (accuracy, confusion, top-5), loss:item(), throughput — against a bare Lua
-- loop doing the same steps (zero_grad, forward, cross-entropy, backward, SGD step, loss:item()).
-- Compare the two aviary rows; the PyTorch column runs a bare torch loop over the same batches.
-- The ResNet rows differ by less than the machine's noise, so a second pair isolates the
-- Trainer's own cost with a model that costs almost nothing (pool, linear 3 -> 200) over 100
-- batches: their difference / 100 is the overhead per iteration (measured 0.24 ms against a
-- ResNet-18 step of about 400 ms: 0.06%).
return function(case, av)
  local ok_models, models = pcall(require, "aviary.models")
  if not ok_models then return end
  local optim = require "aviary.optim"
  local F = require "aviary.nn.functional"
  local train = require "aviary.train"
  local NB, BS, S = 4, 16, 112

  local function setup()
    av.manual_seed(1)
    local model = models.create("resnet18", {num_classes = 200})
    model:train()
    local opt = optim.SGD(model:parameters(), {lr = 1e-3, momentum = 0.9})
    local batches = {}
    for b = 1, NB do batches[b] = {input = av.randn(BS, 3, S, S), target = av.randint(1, 201, {BS}), path = {}} end
    local loader = {size = function() return NB end}
    function loader:iter()
      local b = 0
      return function() b = b + 1; return batches[b] end
    end
    return model, opt, loader, batches
  end

  local torch_setup = ("import torchvision\ntorch.manual_seed(1)\nmodel = torchvision.models.resnet18(num_classes=200).train()\n"
    .. "opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)\n"
    .. "batches = [(torch.randn(%d, 3, %d, %d), torch.randint(0, 200, (%d,))) for _ in range(%d)]"):format(BS, S, S, BS, NB)
  local torch_stmt = "with torch.enable_grad():\n    for x, y in batches:\n        opt.zero_grad()\n"
    .. "        loss = F.cross_entropy(model(x), y)\n        loss.backward()\n        opt.step()\n        loss.item()"

  case(("epoch resnet18 b16 3x112x112 (%d batches): train.Trainer"):format(NB), function()
    local model, opt, loader = setup()
    local t = train.Trainer({model = model, optimizer = opt, train_loader = loader, max_epochs = 1})
    return function()
      t.state.epoch = 0      -- one more epoch per call
      t:run()
    end
  end, torch_setup, torch_stmt, 3, 1, "bare torch loop in the PyTorch column")

  case(("epoch resnet18 b16 3x112x112 (%d batches): bare loop"):format(NB), function()
    local model, opt, _, batches = setup()
    return function()
      model:train()
      for _, b in ipairs(batches) do
        opt:zero_grad()
        local loss = F.cross_entropy(model(b.input), b.target)
        loss:backward()
        opt:step()
        loss:item()
      end
    end
  end, torch_setup, torch_stmt, 3, 1, "the Trainer's row minus this one is its overhead")

  -- the Trainer's own cost per iteration: a near-free model, 100 batches of 16 x 3 x 8 x 8
  local nn = require "aviary.nn"
  local TB = 100
  local function tiny()
    av.manual_seed(1)
    local model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 200))
    local opt = optim.SGD(model:parameters(), {lr = 1e-3, momentum = 0.9})
    local batches = {}
    for b = 1, TB do batches[b] = {input = av.randn(16, 3, 8, 8), target = av.randint(1, 201, {16}), path = {}} end
    local loader = {size = function() return TB end}
    function loader:iter()
      local b = 0
      return function() b = b + 1; return batches[b] end
    end
    return model, opt, loader, batches
  end
  local tiny_setup = ("torch.manual_seed(1)\nmodel = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), "
    .. "torch.nn.Linear(3, 200)).train()\nopt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)\n"
    .. "batches = [(torch.randn(16, 3, 8, 8), torch.randint(0, 200, (16,))) for _ in range(%d)]"):format(TB)
  case(("epoch tiny model (%d batches of 16): train.Trainer"):format(TB), function()
    local model, opt, loader = tiny()
    local t = train.Trainer({model = model, optimizer = opt, train_loader = loader, max_epochs = 1})
    return function()
      t.state.epoch = 0
      t:run()
    end
  end, tiny_setup, torch_stmt, 9, 1, "the Trainer's own cost")
  case(("epoch tiny model (%d batches of 16): bare loop"):format(TB), function()
    local model, opt, _, batches = tiny()
    return function()
      model:train()
      for _, b in ipairs(batches) do
        opt:zero_grad()
        local loss = F.cross_entropy(model(b.input), b.target)
        loss:backward()
        opt:step()
        loss:item()
      end
    end
  end, tiny_setup, torch_stmt, 9, 1, "(Trainer row - this row) / 100 = overhead per iteration")
end
