-- The demo (`make demo`): the study's workflow end to end on a dataset drawn on the spot.
--   1. draws a synthetic CUB-200-2011 (20 species, small images) into data/synthetic, if absent
--   2. prepares the study's layout into data/demo_images (recipes/prepare_cub.lua), if absent
--   3. trains recipes/configs/demo.lua (ResNet-18 from scratch at 112 px) with recipes/train.lua
--   4. evaluates the best checkpoint with recipes/evaluate.lua: predictions, metrics, plots, the
--      feature manifold and report.html
--   5. explains a few test images with recipes/interpret.lua (attribution panels, feature maps, feature
--      visualisation, the pointing game against the birds' boxes), which adds its section to report.html
--   6. exports the model to ONNX (recipes/export_onnx.lua) and checks ONNX Runtime's logits against aviary's
--   7. prints the run folder, the final test accuracy, the wall time and the report's path
-- usage: bin/aviary recipes/demo.lua [KEY.sub=value ...]   (overrides go to recipes/train.lua)
-- The old tensor tour is recipes/tour.lua.
local av = require "aviary"
local json = require "aviary.json"

local CLASSES, PER_CLASS, SIZE = 20, 60, "250x188"
local SYN, IMAGES = "data/synthetic", "data/demo_images"

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function exists(p) return os.execute("test -e " .. sh(p)) == true end
local function count_lines(p)
  local n = 0
  local f = io.open(p)
  if not f then return nil end
  for _ in f:lines() do n = n + 1 end
  f:close()
  return n
end

local t0 = av.clock()
local host = arg[-1] or "bin/aviary"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "recipes"

print(("aviary %s demo: a synthetic CUB-200-2011 (%d species), ResNet-18 from scratch, %d threads\n")
  :format(av._VERSION, CLASSES, 2))

-- 1. the dataset, in CUB's own format
local syn = SYN
local n = count_lines(syn .. "/CUB_200_2011/classes.txt")
if n and n ~= CLASSES then
  syn = "data/synthetic_demo"   -- data/synthetic holds another set (e.g. the 200-species one): keep it
  n = count_lines(syn .. "/CUB_200_2011/classes.txt")
end
if not n then
  print(("[1/6] drawing %d species x %d images (%s) into %s/CUB_200_2011"):format(CLASSES, PER_CLASS, SIZE, syn))
  local r = require("aviary.data.synthetic").generate({out = syn, classes = CLASSES, per_class = PER_CLASS, size = SIZE,
                                                        seed = 1})
  print(("      %d images (%d train, %d test) in %.1f s"):format(r.images or CLASSES * PER_CLASS, r.train or 0, r.test or 0,
    r.seconds or 0))
else
  print(("[1/6] %s/CUB_200_2011 is there (%d species); delete it to draw it again"):format(syn, n))
end

-- 2. the study's layout
if not exists(IMAGES .. "/train.txt") then
  print(("[2/6] preparing %s -> %s"):format(syn .. "/CUB_200_2011", IMAGES))
  local r = require("aviary.data.cub").prepare(syn .. "/CUB_200_2011", IMAGES, {mode = "link"})
  print(("      train: %d images, test: %d images, %d classes"):format(r.train, r.test, r.classes))
else
  print(("[2/6] %s is there; delete it to prepare it again"):format(IMAGES))
end

-- 3. training
local run = "demo-" .. os.date("%Y%m%d-%H%M%S")
print(("[3/6] training: bin/aviary recipes/train.lua --config demo --run-name %s%s\n"):format(run,
  #arg > 0 and (" " .. table.concat(arg, " ")) or ""))
io.stdout:flush()
local args = {}
for _, a in ipairs(arg) do args[#args + 1] = sh(a) end
local ok = os.execute(("%s %s --config demo --run-name %s %s"):format(sh(host), sh(here .. "/train.lua"), sh(run),
  table.concat(args, " ")))
if not ok then
  io.stderr:write("demo: training failed (see above)\n")
  os.exit(1)
end

local dir = "models/" .. run
print(("\n[4/6] evaluating: bin/aviary recipes/evaluate.lua --run %s\n"):format(dir))
io.stdout:flush()
if not os.execute(("%s %s --run %s"):format(sh(host), sh(here .. "/evaluate.lua"), sh(dir))) then
  io.stderr:write("demo: evaluation failed (see above)\n")
  os.exit(1)
end
print(("\n[5/6] interpreting: bin/aviary recipes/interpret.lua --run %s --n 3 --pointing 60 --optvis 4\n"):format(dir))
io.stdout:flush()
if not os.execute(("%s %s --run %s --n 3 --pointing 60 --optvis 4 --optvis-steps 128 --boxes %s"):format(sh(host),
    sh(here .. "/interpret.lua"), sh(dir), sh(syn .. "/CUB_200_2011"))) then
  io.stderr:write("demo: interpretation failed (see above)\n")
  os.exit(1)
end
print(("\n[6/6] exporting: bin/aviary recipes/export_onnx.lua --run %s\n"):format(dir))
io.stdout:flush()
if not os.execute(("%s %s --run %s"):format(sh(host), sh(here .. "/export_onnx.lua"), sh(dir))) then
  io.stderr:write("demo: the ONNX export failed (see above)\n")
  os.exit(1)
end
local okh, h = pcall(json.read, dir .. "/history.json")
print("")
print("run folder: " .. dir)
if okh and type(h) == "table" and #h > 0 then
  local last = h[#h]
  local best = last
  for _, r in ipairs(h) do if r.test_acc > best.test_acc then best = r end end
  print(("final test accuracy %.1f%% after %d epochs (best %.1f%% at epoch %d; chance is %.0f%%); demo wall time %.0f s")
    :format(100 * last.test_acc, last.epoch, 100 * best.test_acc, best.epoch, 100 / CLASSES, av.clock() - t0))
end
local okm, m = pcall(json.read, dir .. "/metrics.json")
if okm and type(m) == "table" and m.top1 then
  print(("evaluation of the best checkpoint: top-1 %.1f%%, top-5 %.1f%%, macro F1 %.3f"):format(100 * m.top1, 100 * m.top5,
    m.macro.f1))
end
print("next: tensorboard --logdir " .. dir .. "/tb, or read docs/training.md to train on the real CUB-200-2011")
local okp, pg = pcall(json.read, dir .. "/interpret/pointing.json")
if okp and type(pg) == "table" and pg.rows then
  local parts = {}
  for _, r in ipairs(pg.rows) do parts[#parts + 1] = ("%s %.0f%%"):format(r.method, 100 * r.score) end
  print(("pointing game (%d test images; a random point %.0f%%): %s"):format(pg.n_images, 100 * (pg.rows[1].baseline or 0),
    table.concat(parts, ", ")))
end
print(("deploy: bin/aviary recipes/predict.lua --model %s/model.onnx --image bird.jpg  (docs/deploy.md)"):format(dir))
print("report: " .. dir .. "/report.html  (open it in a browser)")
