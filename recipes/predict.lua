-- The study's deployment check (walkthrough 006): a trained classifier, as an ONNX file or a run
-- folder, names the species in new photographs with the model's own preprocessing.
--   bin/aviary recipes/predict.lua --model model.onnx|models/<run> --image bird.jpg [--topk 5]
--   bin/aviary recipes/predict.lua --model model.onnx --image photos/ --csv predictions.csv
-- An .onnx file carries its class names and preprocessing (input size, resize, mean, std) in its
-- metadata (aviary.onnx.export writes them); a run folder takes them from its config and dataset.
local av = require "aviary"
local json = require "aviary.json"
local cli = require "aviary.cli"
local usage_error = cli.usage_error

local usage = [[
usage: bin/aviary recipes/predict.lua --model FILE.onnx|RUN_DIR --image FILE|DIR [options]
  --model M        an ONNX file (exported by aviary or another framework) or a run folder
  --image P        an image file, or a folder (every .jpg/.jpeg/.png below it, sorted)
  --topk K         classes to show per image (default 5)
  --csv FILE       write one row per image (path, top-k classes and probabilities); default for a
                   folder: predictions.csv in the current folder
  --checkpoint C   for a run folder: best (default), last, or a path
  --size N         input size when the ONNX file has no preprocessing metadata (default 224)
  --help           this text]]

local function parse_args(args)
  return cli.parse(args, {options = {"model", "image", "topk", "csv", "checkpoint", "size", "help"},
    flags = {help = true}, ints = {topk = 1, size = 8}})
end

local run = require "aviary.run"
local is_dir, exists = run.is_dir, run.exists

local IMAGENET_MEAN, IMAGENET_STD = {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}

-- the model as a function plus what it needs: {forward, classes, resize, crop, mean, std, what}
local function load_model(spec, o)
  if not exists(spec) then error(("--model: '%s' does not exist"):format(spec), 0) end
  if is_dir(spec) then
    local r = run.open(spec)
    local net, info = run.model(r, {checkpoint = o.checkpoint})
    local classes
    local okm, m = pcall(json.read, r.dir .. "/metrics.json")
    if okm and type(m) == "table" and type(m.classes) == "table" then classes = m.classes end
    if not classes then
      local okd, ds = pcall(run.dataset, r.cfg, "test")
      classes = okd and ds.classes or nil
    end
    return {net = net, forward = function(x) return net(x) end, classes = classes, resize = r.cfg.DATA.resize, crop = r.cfg.DATA.crop,
            mean = IMAGENET_MEAN, std = IMAGENET_STD, what = ("%s (%s, %s)"):format(r.name, r.cfg.MODEL.name, info.file)}
  end
  local onnx = require "aviary.onnx"
  local net = onnx.load(spec)
  net:evaluate()
  local meta = net.metadata or {}
  local function decode(v)
    if type(v) ~= "string" then return v end
    local ok, d = pcall(json.decode, v)
    return ok and d or v
  end
  local classes = decode(meta.class_names)
  local pre = decode(meta.preprocessing) or {}
  local crop = tonumber(pre.input_size or pre.crop or meta.input_size) or o.size or 224
  local resize = tonumber(pre.resize_size or pre.resize or meta.resize) or math.floor(crop * 256 / 224 + 0.5)
  return {net = net, forward = function(x) return net(x) end, classes = type(classes) == "table" and classes or nil,
          resize = resize,
          crop = crop, mean = decode(pre.mean or meta.mean) or IMAGENET_MEAN, std = decode(pre.std or meta.std) or IMAGENET_STD,
          what = spec .. (type(classes) == "table" and "" or " (no class names in its metadata: classes are numbers)")}
end

local function main(args)
  local o = parse_args(args)
  if o.help then print(usage); return 0 end
  if not o.model then usage_error("--model is required") end
  if not o.image then usage_error("--image is required") end
  local image = require "aviary.image"
  local m = load_model(o.model, o)
  local files = run.find_images(o.image, "--image")
  local k = o.topk or 5
  local rows = {}
  local failed = 0
  print(("model %s: %d px input (resize %d), %d image%s"):format(m.what, m.crop, m.resize, #files, #files == 1 and "" or "s"))
  -- many images: compile the model once for fast CPU inference (batch norm folded, oneDNN plan)
  local inference = require "aviary.inference"
  if #files >= 16 and inference.available() then
    local ok, fast = pcall(inference.compile, m.net, av.zeros(1, 3, m.crop, m.crop))
    if ok then m.forward = function(x) return fast(x) end
    else io.stderr:write("note: running op by op (" .. tostring(fast) .. ")\n") end
  end
  for _, path in ipairs(files) do
    local ok, x = pcall(function()
      local img = image.load(path)
      img = image.center_crop(image.resize(img, m.resize), m.crop)
      return image.to_float(img, {mean = m.mean, std = m.std}):unsqueeze(1)
    end)
    if not ok then
      failed = failed + 1
      io.stderr:write(("%s: skipped: %s\n"):format(path, tostring(x):gsub("^.-: ", "")))
    else
      local logits = av.no_grad(function() return m.forward(x) end)
      if not av.is_tensor(logits) or logits:dim() ~= 2 then error("the model did not give N x C scores", 0) end
      local C = logits:size(2)
      if m.classes and #m.classes ~= C then
        error(("the model gives %d scores but its metadata names %d classes"):format(C, #m.classes), 0)
      end
      local probs = av.softmax(logits:double(), 2)
      local p, idx = probs:topk(math.min(k, C), 2)
      p, idx = p:view(-1):tolist(), idx:view(-1):tolist()
      print(path)
      local row = {path}
      for j = 1, #idx do
        local name = m.classes and m.classes[idx[j]] or tostring(idx[j])
        print(("  %d. %-40s %6.2f%%"):format(j, name, 100 * p[j]))
        row[#row + 1] = name
        row[#row + 1] = ("%.6f"):format(p[j])
      end
      rows[#rows + 1] = row
    end
  end
  local csv = o.csv or (#files > 1 and "predictions.csv" or nil)
  if csv then
    local head = {"path"}
    for j = 1, k do head[#head + 1] = "top" .. j; head[#head + 1] = "top" .. j .. "_p" end
    require("aviary.evaluation").write_csv(csv, head, rows)
    print(("wrote %s (%d rows%s)"):format(csv, #rows, failed > 0 and (", " .. failed .. " unreadable files skipped") or ""))
  end
  return failed > 0 and #rows == 0 and 1 or 0
end

cli.run("predict", usage, main)
