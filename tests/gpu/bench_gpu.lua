-- GPU throughput of whole-model jobs: resnet50 training steps (SGD with
-- momentum, cross entropy) and inference, batch 64, 224x224, in float32 with
-- TF32, under bf16 autocast, and bf16 with channels-last input; the same cases
-- as tests/gpu/torch_bench_gpu.py, which times PyTorch on the same machine.
-- cuDNN benchmark mode is on for both.
-- usage: aviary tests/gpu/bench_gpu.lua [--batch=64] [--size=224] [--steps=10] [--warmup=3]
--                                       [--model=resnet50] [--cases=a,b] [--out=file.json]
--        aviary tests/gpu/bench_gpu.lua --report=aviary.json,torch.json   (prints the side-by-side table)
local av = require "aviary"
local cjson = require "cjson"

local o = {batch = 64, size = 224, steps = 10, warmup = 3, model = "resnet50"}
local cases_arg, outfile, report
for _, a in ipairs(arg) do
  local k, v = a:match("^%-%-([%w_]+)=(.*)$")
  if k == "out" then outfile = v
  elseif k == "report" then report = v
  elseif k == "cases" then cases_arg = v
  elseif k and o[k] ~= nil then o[k] = tonumber(v) or v
  elseif a ~= "" then error("bench_gpu: unknown argument " .. a) end
end

-- the cases, in table order: name, training?, autocast dtype, channels-last input
local CASES = {
  {"train_fp32_tf32", true, nil, false},
  {"train_bf16", true, "bf16", false},
  {"train_bf16_channels_last", true, "bf16", true},
  {"infer_fp32_tf32", false, nil, false},
  {"infer_bf16", false, "bf16", false},
}
local DESCR = {
  train_fp32_tf32 = "training step, float32 (TF32)",
  train_bf16 = "training step, bf16 autocast",
  train_bf16_channels_last = "training step, bf16 autocast, channels-last",
  infer_fp32_tf32 = "inference, float32 (TF32)",
  infer_bf16 = "inference, bf16 autocast",
}

local function read_json(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local ok, v = pcall(cjson.decode, s)
  return ok and v or nil
end

if report then
  local pa, pt = report:match("^([^,]+),(.+)$")
  local a, t = read_json(pa or report) or {}, read_json(pt or "") or {}
  local function by_name(r)
    local m = {}
    for _, c in ipairs(r.cases or {}) do m[c.name] = c end
    return m
  end
  local am, tm = by_name(a), by_name(t)
  local meta = a.meta or t.meta or {}
  print(("%s, batch %d, %dx%d, %s; images/s (higher is better), ratio = aviary / PyTorch")
    :format(meta.model or o.model, meta.batch or o.batch, meta.size or o.size, meta.size or o.size,
      t.device or a.device or "GPU"))
  print("")
  print("| case | aviary img/s | PyTorch img/s | ratio |")
  print("|---|---|---|---|")
  for _, c in ipairs(CASES) do
    local x, y = am[c[1]], tm[c[1]]
    local function cell(r)
      if not r then return "n/a" end
      if r.error then return "error" end
      return ("%.0f"):format(r.images_per_s)
    end
    local ratio = (x and y and x.images_per_s and y.images_per_s) and ("%.2fx"):format(x.images_per_s / y.images_per_s) or "n/a"
    print(("| %s | %s | %s | %s |"):format(DESCR[c[1]], cell(x), cell(y), ratio))
  end
  for _, r in ipairs({a, t}) do
    for _, c in ipairs(r.cases or {}) do
      if c.error then print(("(%s %s: %s)"):format(r.who or "?", c.name, tostring(c.error):sub(1, 200))) end
    end
  end
  os.exit(0)
end

if not (av.cuda and av.cuda.is_available()) then
  print("bench_gpu: SKIP (no CUDA device)")
  os.exit(0)
end

local models = require "aviary.models"
local optim = require "aviary.optim"
local amp = require "aviary.amp"
local F = require "aviary.nn.functional"

av.cuda.benchmark = true
amp.set_allow_tf32(true)

local wanted
if cases_arg then
  wanted = {}
  for n in cases_arg:gmatch("[^,]+") do wanted[n] = true end
end

local function nhwc(t) return t:permute(1, 3, 4, 2):contiguous():permute(1, 4, 2, 3) end

local function run_case(c)
  local name, training, dtype, channels_last = c[1], c[2], c[3], c[4]
  av.manual_seed(0)
  local model = models.create(o.model, {num_classes = 1000})
  model:to("cuda")
  local x = av.randn(o.batch, 3, o.size, o.size):cuda()
  if channels_last then x = nhwc(x) end
  local y = av.randint(1, 1001, {o.batch}):cuda()
  local step
  if training then
    model:train()
    local opt = optim.SGD(model:parameters(), {lr = 0.01, momentum = 0.9})
    step = function()
      opt:zero_grad()
      local logits = dtype and amp.autocast(dtype, model, x) or model(x)
      local loss = F.cross_entropy(logits, y)
      loss:backward()
      opt:step()
    end
  else
    model:evaluate()
    step = function()
      av.no_grad(function() return dtype and amp.autocast(dtype, model, x) or model(x) end)
    end
  end
  for _ = 1, o.warmup do step() end
  av.cuda.synchronize()
  av.cuda.reset_peak_memory_stats()
  local t0 = av.clock()
  for _ = 1, o.steps do step() end
  av.cuda.synchronize()
  local dt = av.clock() - t0
  local stats = av.cuda.memory_stats()
  return {name = name, images_per_s = o.batch * o.steps / dt, ms_per_step = dt / o.steps * 1e3,
          peak_mb = stats and (stats.peak_allocated or 0) / 2 ^ 20 or nil}
end

local results = {who = "aviary", meta = {model = o.model, batch = o.batch, size = o.size, steps = o.steps},
                 cudnn = amp._core and amp._core.cudnn_version() or nil, cases = {}}
for _, c in ipairs(CASES) do
  if not wanted or wanted[c[1]] then
    local ok, r = pcall(run_case, c)
    if not ok then r = {name = c[1], error = tostring(r)} end
    results.cases[#results.cases + 1] = r
    if r.error then
      io.stderr:write(("aviary %-28s error: %s\n"):format(c[1], r.error))
    else
      io.stderr:write(("aviary %-28s %8.1f img/s  %8.2f ms/step  peak %.0f MB\n"):format(c[1], r.images_per_s,
        r.ms_per_step, r.peak_mb or 0))
    end
    -- written after every case, so a run stopped at its time limit still reports what it measured
    if outfile then
      local f = assert(io.open(outfile, "w"))
      f:write(cjson.encode(results), "\n")
      f:close()
    end
    collectgarbage()
    collectgarbage()
    av.cuda.empty_cache()
  end
end
