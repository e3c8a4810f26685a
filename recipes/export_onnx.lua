-- The study's deployment step (walkthrough 006): a trained run exported to ONNX, with its class
-- names and preprocessing in the file's metadata, and checked by ONNX Runtime on test images.
--   bin/aviary recipes/export_onnx.lua --run models/<run> [--out FILE] [--opset 17] [--fold-batchnorm]
-- Writes <run>/model.onnx by default. See docs/deploy.md for running it from Python, C++ and JavaScript.
local av = require "aviary"
local cli = require "aviary.cli"
local usage_error = cli.usage_error

local usage = [[
usage: bin/aviary recipes/export_onnx.lua --run models/<run> [options]
  --run DIR          a run folder written by recipes/train.lua
  --checkpoint C     best (default), last, or a .ckpt / .safetensors path
  --out FILE         default <run>/model.onnx
  --opset N          13..21 (default 17)
  --fold-batchnorm   fold batch norm into the convolutions (a smaller, faster graph)
  --softmax          add a 'probabilities' output after the logits
  --verify N         test images to run through ONNX Runtime and compare (default 4; 0 skips)
  --help             this text]]

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function main(args)
  local o = cli.parse(args, {options = {"run", "checkpoint", "out", "opset", "fold-batchnorm", "softmax", "verify", "help"},
    flags = {["fold-batchnorm"] = true, softmax = true, help = true}, ints = {opset = 13, verify = 0}})
  if o.help then print(usage); return 0 end
  if not o.run then usage_error("--run DIR is required") end
  local run = require "aviary.run"
  local image = require "aviary.image"
  local onnx = require "aviary.onnx"
  local r = run.open(o.run)
  local cfg = r.cfg
  av.set_num_threads(cfg.SYSTEM.threads)
  local net, info = run.model(r, {checkpoint = o.checkpoint})
  run.check_data(cfg)
  local ds = run.dataset(cfg, "test")
  run.check_classes(cfg, ds)
  local out = o.out or (r.dir .. "/model.onnx")
  local C = cfg.DATA.crop
  local t0 = av.clock()
  onnx.export(net, av.zeros(1, 3, C, C), out, {opset = o.opset or 17, fold_batchnorm = o["fold-batchnorm"] or false,
    softmax = o.softmax or false, dynamic_batch = true,
    metadata = {class_names = ds.classes, input_size = C, resize_size = cfg.DATA.resize, mean = image.IMAGENET_MEAN,
                std = image.IMAGENET_STD, interpolation = "bilinear", model = cfg.MODEL.name, run = r.name,
                checkpoint = info.file}})
  local f = io.open(out, "rb")
  local size = f:seek("end")
  f:close()
  print(("exported %s (%s, %s) to %s: %.1f MB, opset %d, %d classes, in %.2f s"):format(r.name, cfg.MODEL.name, info.file,
    out, size / 2 ^ 20, o.opset or 17, #ds.classes, av.clock() - t0))

  local n = o.verify or 4
  if n == 0 then return 0 end
  -- aviary's logits and ONNX Runtime's on the same test images
  local root = debug.getinfo(1, "S").source:match("^@(.*)/recipes/[^/]*$") or "."
  local js = root .. "/tools/node/ort_run.js"
  if os.execute("command -v node >/dev/null 2>&1") ~= true
      or os.execute("test -e " .. sh(root .. "/tools/node/node_modules/onnxruntime-node")) ~= true then
    print("verification skipped: ONNX Runtime is not installed (make test-deps installs node's onnxruntime-node)")
    return 0
  end
  local xs = {}
  local step = math.max(1, #ds.samples // n)
  for i = 1, #ds.samples, step do
    if #xs < n then
      local img = image.center_crop(image.resize(image.load(ds.samples[i].path), cfg.DATA.resize), C)
      xs[#xs + 1] = image.to_float(img, {mean = image.IMAGENET_MEAN, std = image.IMAGENET_STD})
    end
  end
  local x = av.stack(xs)
  local ours = av.no_grad(function() return net(x) end)
  local tmp = out .. ".verify"
  av.save(tmp .. ".in.safetensors", {input = x})
  local p = io.popen(("node %s %s %s %s --threads %d 2>&1"):format(sh(js), sh(out), sh(tmp .. ".in.safetensors"),
    sh(tmp .. ".out.safetensors"), cfg.SYSTEM.threads))
  local text = p:read("a")
  local ok = p:close()
  os.remove(tmp .. ".in.safetensors")
  if not ok then
    os.remove(tmp .. ".out.safetensors")
    error("ONNX Runtime could not run the exported model: " .. text, 0)
  end
  local res = av.load(tmp .. ".out.safetensors")
  os.remove(tmp .. ".out.safetensors")
  local theirs = res.output
  local rel = ((theirs - ours):abs():max() / ours:abs():max()):item()
  local _, a = ours:max(2)
  local _, b = theirs:max(2)
  local agree = a:eq(b):sum():item()
  print(("ONNX Runtime on %d test images: logits equal aviary's to %.1e (relative), top-1 agreement %d/%d"):format(#xs, rel,
    agree, #xs))
  if rel > 1e-4 or agree ~= #xs then error(("the exported model disagrees with aviary (%.1e relative)"):format(rel), 0) end
  return 0
end

cli.run("export_onnx", usage, main)
