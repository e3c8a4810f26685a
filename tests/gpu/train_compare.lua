-- Trains resnet18 for a few steps on the GPU and on the CPU from the same
-- weights on the same batches and compares the losses step by step (llm.c's
-- whole-step check, on aviary's own CPU path as the reference).
-- usage: aviary tests/gpu/train_compare.lua [--steps=20] [--batch=16] [--size=64] [--threads=N] [--out=file.json]
-- Exits 0 when the losses agree (step 1 within 1e-4 relative, every step within 2e-2), 1 otherwise;
-- prints SKIP and exits 0 without a CUDA device.
local av = require "aviary"
local models = require "aviary.models"
local optim = require "aviary.optim"
local F = require "aviary.nn.functional"

local steps, batch, size, threads, outfile = 20, 16, 64, 16, nil
for _, a in ipairs(arg) do
  steps = tonumber(a:match("^%-%-steps=(%d+)$")) or steps
  batch = tonumber(a:match("^%-%-batch=(%d+)$")) or batch
  size = tonumber(a:match("^%-%-size=(%d+)$")) or size
  threads = tonumber(a:match("^%-%-threads=(%d+)$")) or threads
  outfile = a:match("^%-%-out=(.*)$") or outfile
end

if not (av.cuda and av.cuda.is_available()) then
  print("train_compare: SKIP (no CUDA device)")
  os.exit(0)
end
av.set_num_threads(threads)

av.manual_seed(0)
local classes = 10
local cpu_model = models.create("resnet18", {num_classes = classes})
local gpu_model = models.create("resnet18", {num_classes = classes})
gpu_model:load_state_dict(cpu_model:state_dict())
gpu_model:to("cuda")
cpu_model:train()
gpu_model:train()

local xs, ys = {}, {}
for i = 1, steps do
  xs[i] = av.randn(batch, 3, size, size)
  ys[i] = av.randint(1, classes + 1, {batch})
end

local function run(model, device)
  local opt = optim.SGD(model:parameters(), {lr = 0.01, momentum = 0.9, weight_decay = 1e-4})
  local losses = {}
  local t0 = av.clock()
  for i = 1, steps do
    local x, y = xs[i], ys[i]
    if device == "cuda" then x, y = x:cuda(), y:cuda() end
    opt:zero_grad()
    local loss = F.cross_entropy(model(x), y)
    loss:backward()
    opt:step()
    losses[i] = loss:item()
  end
  if device == "cuda" then av.cuda.synchronize() end
  return losses, av.clock() - t0
end

local lc, tc = run(cpu_model, "cpu")
local lg, tg = run(gpu_model, "cuda")

local ok, worst = true, 0
print(("train_compare: resnet18, batch %d, %dx%d, SGD momentum 0.9, %d steps (CPU %d threads %.1f s, GPU %.1f s)")
  :format(batch, size, size, steps, threads, tc, tg))
print("| step | CPU loss | GPU loss | relative difference |")
print("|---|---|---|---|")
local rows = {}
for i = 1, steps do
  local d = math.abs(lg[i] - lc[i]) / math.max(math.abs(lc[i]), 1e-12)
  if d ~= d then d = math.huge end
  worst = math.max(worst, d)
  if (i == 1 and d > 1e-4) or d > 2e-2 then ok = false end
  print(("| %d | %.6f | %.6f | %.2e |"):format(i, lc[i], lg[i], d))
  rows[i] = {step = i, cpu = lc[i], gpu = lg[i], rel = d}
end
print(("train_compare: %s (largest relative difference %.2e)"):format(ok and "PASS" or "FAIL", worst))
if outfile then
  local f = assert(io.open(outfile, "w"))
  f:write(require("cjson").encode({ok = ok, worst = worst, steps = rows, cpu_seconds = tc, gpu_seconds = tg}), "\n")
  f:close()
end
os.exit(ok and 0 or 1)
