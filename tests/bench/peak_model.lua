-- Peak resident memory of one whole-model job in a fresh process: prints
-- "<rss before MB> <peak MB>" from /proc/self/status.
-- usage: aviary peak_model.lua resnet18|resnet50 train|infer threads
local av = require "aviary"
local models = require "aviary.models"
local optim = require "aviary.optim"
local F = require "aviary.nn.functional"

local name, mode, threads = arg[1] or "resnet18", arg[2] or "train", tonumber(arg[3] or "2")
av.set_num_threads(threads)

local function status(key)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. key .. ":%s+(%d+)")
    if v then return tonumber(v) / 1024 end
  end
end

av.manual_seed(1)
local model = models.create(name, {num_classes = 200})
collectgarbage()
local before = status("VmRSS")
if mode == "train" then
  local opt = optim.SGD(model:parameters(), {lr = 1e-3, momentum = 0.9})
  local x, y = av.randn(16, 3, 112, 112), av.randint(1, 201, {16})
  for _ = 1, 2 do
    opt:zero_grad()
    F.cross_entropy(model(x), y):backward()
    opt:step()
  end
else
  model:evaluate()
  local x = av.randn(16, 3, 224, 224)
  for _ = 1, 2 do av.no_grad(function() return model(x) end) end
end
print(("%.1f %.1f"):format(before, status("VmHWM")))
