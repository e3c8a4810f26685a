--- aviary.run: a training run's folder and what it takes to rebuild its data and model.
-- recipes/train.lua writes a run folder (config.lua, meta.json, history.json, best.ckpt,
-- last.ckpt, last.safetensors); recipes/evaluate.lua and the notebooks open it again:
--
--   local run = require "aviary.run"
--   local r = run.open("models/demo-20261129-112706")   -- r.cfg, r.meta, r.history, r.best
--   local net, info = run.model(r, {checkpoint = "best"})  -- evaluate mode; info.epoch, info.file
--   local test = run.dataset(r.cfg, "test")              -- the test split with the test transform
local av = require "aviary"
local json = require "aviary.json"

local run = {}

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function is_dir(p) return os.execute("test -d " .. sh(p)) == true end
local function exists(p) return os.execute("test -e " .. sh(p)) == true end
run.is_dir, run.exists, run.sh = is_dir, exists, sh

local PREPARE_HINT = [[
prepare the data first:
  the real set:  bin/aviary recipes/prepare_cub.lua --src=data/CUB_200_2011.tgz --dst=%s
  a synthetic one: bin/aviary recipes/make_synthetic_cub.lua --out=data/synthetic --classes=20 --per_class=30
                 bin/aviary recipes/prepare_cub.lua --src=data/synthetic/CUB_200_2011 --dst=%s
(or set DATA.dir=... to where the prepared set is)]]

--- run.find_images(spec, who) -> sorted image paths: spec is a file or a folder (searched below it for
-- .jpg/.jpeg/.png), or several separated by commas; a folder without images is an error naming `who`
function run.find_images(spec, who)
  local out = {}
  for item in tostring(spec):gmatch("[^,]+") do
    if is_dir(item) then
      local n = #out
      local f = io.popen("find " .. sh(item) .. " -type f \\( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \\) | sort")
      for l in f:lines() do out[#out + 1] = l end
      f:close()
      if #out == n then error(("%s: no .jpg/.jpeg/.png file in '%s'"):format(who or "images", item), 0) end
    else
      out[#out + 1] = item
    end
  end
  return out
end

--- run.check_data(cfg): errors (saying how to prepare the data) unless cfg.DATA points at a usable dataset
function run.check_data(cfg)
  local D = cfg.DATA
  local hint = PREPARE_HINT:format(D.dir, D.dir)
  if not is_dir(D.dir) then error(("data folder '%s' does not exist; %s"):format(D.dir, hint), 0) end
  if D.format == "cub" then
    if not exists(D.dir .. "/images.txt") then
      error(("DATA.format='cub' but '%s' holds no images.txt (it must be an extracted CUB_200_2011 folder); "
        .. "or use DATA.format='folder' with a prepared set; %s"):format(D.dir, hint), 0)
    end
    return
  end
  for _, sub in ipairs({D.train_subdir, D.test_subdir}) do
    local p = D.dir .. "/" .. sub
    if not is_dir(p) then
      local extra = exists(D.dir .. "/images.txt") and
        (" ('%s' looks like an extracted CUB_200_2011 folder: set DATA.format='cub', or prepare it)"):format(D.dir) or ""
      error(("'%s' has no '%s' folder: DATA.dir must hold %s/<class>/*.jpg and %s/<class>/*.jpg%s; %s")
        :format(D.dir, sub, D.train_subdir, D.test_subdir, extra, hint), 0)
    end
  end
end

--- run.dataset(cfg, split) -> the 'train' (augmenting transform) or 'test' (deterministic) dataset
function run.dataset(cfg, split)
  if split ~= "train" and split ~= "test" then
    error(("run.dataset: split must be 'train' or 'test', got '%s'"):format(tostring(split)), 2)
  end
  local data = require "aviary.data"
  local D, seed = cfg.DATA, cfg.SYSTEM.seed
  local tf = split == "train" and data.transforms.preset(D.preset, "train", {size = D.crop, resize = D.resize})
    or data.transforms.preset("default", "test", {size = D.crop, resize = D.resize})
  if D.format == "cub" then return data.CUB(D.dir, {split = split, transform = tf, seed = seed}) end
  return data.ImageFolder(D.dir .. "/" .. (split == "train" and D.train_subdir or D.test_subdir), {transform = tf, seed = seed})
end

--- run.datasets(cfg) -> train, test: both splits, checked to share their classes and MODEL.num_classes
function run.datasets(cfg)
  local train_ds, test_ds = run.dataset(cfg, "train"), run.dataset(cfg, "test")
  if #train_ds.classes ~= #test_ds.classes then
    error(("the training set has %d classes but the test set %d (in %s)"):format(#train_ds.classes, #test_ds.classes,
      cfg.DATA.dir), 0)
  end
  for i, c in ipairs(train_ds.classes) do
    if test_ds.classes[i] ~= c then
      error(("the training and test sets' classes differ ('%s' vs '%s' at %d)"):format(c, tostring(test_ds.classes[i]), i), 0)
    end
  end
  run.check_classes(cfg, test_ds)
  return train_ds, test_ds
end

--- run.check_classes(cfg, ds): errors unless the dataset has MODEL.num_classes classes
function run.check_classes(cfg, ds)
  if #ds.classes ~= cfg.MODEL.num_classes then
    error(("the model has %d classes (MODEL.num_classes) but %s has %d; a model is only evaluated on the classes it "
      .. "was trained for: point DATA.dir at its dataset, or set MODEL.num_classes=%d to train a new head")
      :format(cfg.MODEL.num_classes, cfg.DATA.dir, #ds.classes, #ds.classes), 0)
  end
end

--- run.open(dir) -> {dir, cfg, meta, history, best}: a run folder's config (config.lua, as resolved at training),
-- meta.json, history.json (per-epoch records, {} if absent) and best.json's first entry (or nil)
function run.open(dir, overrides)
  local config = require "aviary.config"
  if type(dir) ~= "string" or dir == "" then error("run.open: expected a run folder path", 2) end
  dir = dir:gsub("/+$", "")
  if not is_dir(dir) then
    error(("run folder '%s' does not exist (runs are under models/: ls models)"):format(dir), 0)
  end
  if not exists(dir .. "/config.lua") then
    error(("'%s' has no config.lua: is it a run folder written by recipes/train.lua?"):format(dir), 0)
  end
  local r = {dir = dir}
  r.cfg = config.resolve(dir .. "/config.lua", overrides)
  local ok, m = pcall(json.read, dir .. "/meta.json")
  r.meta = ok and type(m) == "table" and m or {}
  local okh, h = pcall(json.read, dir .. "/history.json")
  r.history = okh and type(h) == "table" and h or {}
  local okb, b = pcall(json.read, dir .. "/best.json")
  r.best = okb and type(b) == "table" and b[1] or nil
  r.name = dir:match("([^/]+)$")
  return r
end

--- run.build_model(cfg) -> a fresh (untrained) model as MODEL describes (its weights option is ignored)
function run.build_model(cfg)
  local models = require "aviary.models"
  return models.create(cfg.MODEL.name, {num_classes = cfg.MODEL.num_classes})
end

--- run.model(r, {checkpoint = 'best' | 'last' | path}) -> model (evaluate mode), {file=, epoch=}
-- 'best' falls back to last.ckpt, then last.safetensors, when the run kept no best checkpoint.
-- A path may be a .ckpt (checkpoint.save) or a .safetensors state dict (model:save, torchvision names).
function run.model(r, opts)
  opts = opts or {}
  local which = opts.checkpoint or "best"
  local candidates
  if which == "best" then candidates = {"best.ckpt", "last.ckpt", "last.safetensors"}
  elseif which == "last" then candidates = {"last.ckpt", "last.safetensors"}
  else candidates = {which} end
  local file
  for _, c in ipairs(candidates) do
    if which ~= "best" and which ~= "last" and exists(c) then file = c; break end
    if exists(r.dir .. "/" .. c) then file = r.dir .. "/" .. c; break end
  end
  if not file then
    error(("'%s' has no checkpoint (looked for %s): the run ended before its first epoch; train it with "
      .. "bin/aviary recipes/train.lua --resume %s"):format(r.dir, table.concat(candidates, ", "), r.dir), 0)
  end
  local net = run.build_model(r.cfg)
  local epoch
  if file:match("%.safetensors$") then
    local ok, err = pcall(net.load, net, file)
    if not ok then error(("cannot load '%s' into %s: %s"):format(file, r.cfg.MODEL.name, tostring(err)), 0) end
  else
    local ok, info = pcall(require("aviary.checkpoint").load, file, {model = net, restore_rng = false})
    if not ok then error(tostring(info), 0) end
    epoch = info.epoch
  end
  net:evaluate()
  return net, {file = file, epoch = epoch}
end

return run
