-- ONNX: export and import time of ResNet-50, and inference of ResNet-50 at batch 8, 224x224, on
-- the bench's threads: aviary's own model, the same model imported back from its ONNX file, each
-- run op by op and compiled by aviary.inference (batch norm folded, ReLU and residual add fused,
-- oneDNN's blocked layout kept between layers), and ONNX Runtime (onnxruntime-node,
-- tools/node/ort_run.js) on that file. Times are the best of --reps runs (other work on a shared
-- machine only ever makes a run slower). Prints one markdown table.
-- usage: aviary tests/bench/onnx_bench.lua [--threads=N] [--reps=N]   (part of `make bench`)
local av = require "aviary"
local threads, reps = 2, 5
for _, a in ipairs(arg) do
  threads = tonumber(a:match("^%-%-threads=(%d+)$")) or threads
  reps = tonumber(a:match("^%-%-reps=(%d+)$")) or reps
end
av.set_num_threads(threads)
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local root = here .. "/../.."
local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function median(t)
  table.sort(t)
  return t[(#t + 1) // 2]
end
local function time_it(fn)
  fn()
  local best = math.huge
  for _ = 1, reps do
    collectgarbage()
    local t0 = av.clock()
    fn()
    best = math.min(best, av.clock() - t0)
  end
  return best
end

local onnx = require "aviary.onnx"
local models = require "aviary.models"
av.manual_seed(1)
local net = models.create("resnet50")
net:evaluate()
local x = av.randn(8, 3, 224, 224)
local tmp = os.getenv("TMPDIR") or "/tmp"
local path = tmp .. "/aviary_bench_resnet50.onnx"

local t0 = av.clock()
onnx.export(net, x:narrow(1, 1, 1), path, {opset = 17})
local t_export = av.clock() - t0
t0 = av.clock()
local g = onnx.load(path)
local t_import = av.clock() - t0
g:evaluate()

local inference = require "aviary.inference"
t0 = av.clock()
local fast = inference.compile(net, x)
local t_compile = av.clock() - t0
local fast_g = inference.compile(g)
local y_ref = av.no_grad(function() return net(x) end)
local max_diff = math.max((fast(x) - y_ref):abs():max():item(), (fast_g(x) - y_ref):abs():max():item())

local t_native = time_it(function() av.no_grad(function() return net(x) end) end)
local t_imported = time_it(function() av.no_grad(function() return g(x) end) end)
local t_fast = time_it(function() return fast(x) end)
local t_fast_g = time_it(function() return fast_g(x) end)

local ort_ms
local inp, outp = tmp .. "/aviary_bench_in.safetensors", tmp .. "/aviary_bench_out.safetensors"
av.save(inp, {input = x})
if os.execute("command -v node >/dev/null 2>&1") == true then
  local p = io.popen(("node %s %s %s %s --threads %d --bench %d 2>&1"):format(sh(root .. "/tools/node/ort_run.js"), sh(path),
    sh(inp), sh(outp), threads, reps))
  local text = p:read("a")
  p:close()
  ort_ms = tonumber(text:match('"min_ms":%s*([%d%.]+)'))
  if not ort_ms then io.stderr:write("onnx_bench: ONNX Runtime did not run: " .. text .. "\n") end
end
os.remove(inp); os.remove(outp); os.remove(path)

local function row(what, t)
  return ("| inference batch 8, 224x224: %s | %.1f ms | %s |"):format(what, t * 1e3,
    ort_ms and ("%.2fx"):format(ort_ms / (t * 1e3)) or "n/a")
end
local lines = {
  ("ONNX, ResNet-50, %d threads (onnxruntime-node 1.30 for ONNX Runtime)"):format(threads), "",
  "| case | time | ratio (ONNX Runtime / this) |", "|---|---|---|",
  ("| export to ONNX (opset 17) | %.2f s | |"):format(t_export),
  ("| import from ONNX | %.2f s | |"):format(t_import),
  ("| compile for inference (trace, fold, plan) | %.2f s | |"):format(t_compile),
  row("aviary model, op by op", t_native),
  row("aviary model, compiled", t_fast),
  row("aviary, imported from ONNX, op by op", t_imported),
  row("aviary, imported from ONNX, compiled", t_fast_g),
  ("| inference batch 8, 224x224: ONNX Runtime | %s | 1.00x |"):format(ort_ms and ("%.1f ms"):format(ort_ms) or "n/a"),
}
lines[#lines + 1] = ""
lines[#lines + 1] = ("compiled logits differ from op-by-op ones by at most %.2g (largest logit %.3g)"):format(max_diff,
  y_ref:abs():max():item())
print(table.concat(lines, "\n"))
