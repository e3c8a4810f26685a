--- aviary.data: datasets, transforms declared as data, and a DataLoader whose
-- C worker threads decode and augment images into a ring of batch buffers.
--
--   local data = require "aviary.data"
--   local ds = data.ImageFolder("data/birds/train", {transform = data.transforms.preset("default", "train")})
--   local loader = data.DataLoader(ds, {batch_size = 32, shuffle = true, num_workers = 4, seed = 1})
--   for batch in loader:iter() do          -- one epoch; the next iter() reshuffles
--     -- batch.input: float32 N x 3 x 224 x 224, batch.target: int64 N (1-based), batch.path: N paths
--   end
--
-- Transforms are a list of {name, positional..., option = value}: {{'Resize', 256},
-- {'CenterCrop', 224}, {'Normalize'}}. Every random draw of a sample comes from
-- a stream keyed by (seed, epoch, sample index), so batches are the same for any
-- num_workers (0 decodes on the calling thread). See docs/data.md.
local av = require "aviary"
local util = require "aviary.util"

local data = {}
local C = av._data

local function fail(fn, fmt, ...) error(("aviary.data.%s: " .. fmt):format(fn, ...), 3) end

local function check_opts(fn, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(fn, "expected an options table, got %s", type(opts)) end
  local set = {}
  for _, k in ipairs(allowed) do set[k] = true end
  for k in pairs(opts) do
    if type(k) == "string" and not set[k] then
      fail(fn, "unknown option '%s' (did you mean '%s'?)", k, util.nearest(k, allowed))
    end
  end
  return opts
end

------------------------------------------------------------------------------
-- transforms
------------------------------------------------------------------------------
local transforms = {}
data.transforms = transforms

local function pair(v, what, sym)
  if type(v) == "number" then
    if sym then return {-v, v} end
    return {v, v}
  end
  if type(v) == "table" and #v == 2 and type(v[1]) == "number" and type(v[2]) == "number" then return {v[1], v[2]} end
  error(("%s must be a number or a {lo, hi} pair"):format(what), 0)
end

local function size2(v, what)
  if math.type(v) == "integer" then return v, v end
  if type(v) == "table" and #v == 2 and math.type(v[1]) == "integer" and math.type(v[2]) == "integer" then
    return v[1], v[2]
  end
  if type(v) == "table" and #v == 1 and math.type(v[1]) == "integer" then return v[1], v[1] end
  error(("%s must be an integer or {h, w}"):format(what), 0)
end

local function triple(v, what)
  if type(v) == "number" then return {v, v, v} end
  if type(v) == "table" and #v == 3 then return {v[1], v[2], v[3]} end
  error(("%s must be a number or 3 numbers"):format(what), 0)
end

local function interp(v)
  if v == nil then return "bilinear" end
  if v ~= "bilinear" and v ~= "bicubic" and v ~= "nearest" then
    error(("interpolation must be 'bilinear', 'bicubic' or 'nearest', got '%s'"):format(tostring(v)), 0)
  end
  return v
end

-- jitter factor ranges as torchvision: b -> [max(0, 1 - b), 1 + b]; hue h -> [-h, h]
local function jitter(v, what, center, lo_bound)
  if v == nil or v == 0 then return {1, 0} end -- off
  if type(v) == "number" then
    if v < 0 then error(("%s must be non-negative"):format(what), 0) end
    return {math.max(lo_bound, center - v), center + v}
  end
  return pair(v, what)
end

-- each kind: positional parameter names, options, and a builder to the C table
local kinds = {
  Resize = {pos = {"size"}, opts = {"size", "interpolation", "max_size"}, build = function(a)
    if a.size == nil then error("size is required", 0) end
    local t = {kind = "Resize", interp = interp(a.interpolation), max_size = a.max_size}
    if math.type(a.size) == "integer" then t.size = a.size else t.h, t.w = size2(a.size, "size") end
    return t
  end},
  CenterCrop = {pos = {"size"}, opts = {"size"}, build = function(a)
    local h, w = size2(a.size, "size")
    return {kind = "CenterCrop", h = h, w = w}
  end},
  RandomResizedCrop = {pos = {"size"}, opts = {"size", "scale", "ratio", "interpolation"}, build = function(a)
    local h, w = size2(a.size, "size")
    return {kind = "RandomResizedCrop", h = h, w = w, scale = a.scale and pair(a.scale, "scale") or {0.08, 1.0},
            ratio = a.ratio and pair(a.ratio, "ratio") or {3 / 4, 4 / 3}, interp = interp(a.interpolation)}
  end},
  RandomHorizontalFlip = {pos = {"p"}, opts = {"p"}, build = function(a)
    return {kind = "RandomHorizontalFlip", p = a.p or 0.5}
  end},
  RandomVerticalFlip = {pos = {"p"}, opts = {"p"}, build = function(a)
    return {kind = "RandomVerticalFlip", p = a.p or 0.5}
  end},
  RandomRotation = {pos = {"degrees"}, opts = {"degrees", "fill"}, build = function(a)
    if a.degrees == nil then error("degrees is required", 0) end
    return {kind = "RandomRotation", degrees = pair(a.degrees, "degrees", true), fill = triple(a.fill or 0, "fill")}
  end},
  RandomPerspective = {pos = {"distortion_scale", "p"}, opts = {"distortion_scale", "p", "fill"}, build = function(a)
    return {kind = "RandomPerspective", distortion = a.distortion_scale or 0.5, p = a.p or 0.5,
            fill = triple(a.fill or 0, "fill")}
  end},
  ColorJitter = {pos = {"brightness", "contrast", "saturation", "hue"},
                 opts = {"brightness", "contrast", "saturation", "hue"}, build = function(a)
    return {kind = "ColorJitter", brightness = jitter(a.brightness, "brightness", 1, 0),
            contrast = jitter(a.contrast, "contrast", 1, 0), saturation = jitter(a.saturation, "saturation", 1, 0),
            hue = jitter(a.hue, "hue", 0, -0.5)}
  end},
  Normalize = {pos = {"mean", "std"}, opts = {"mean", "std"}, build = function(a)
    return {kind = "Normalize", mean = triple(a.mean or {0.485, 0.456, 0.406}, "mean"),
            std = triple(a.std or {0.229, 0.224, 0.225}, "std")}
  end},
  ToTensor = {pos = {}, opts = {}, build = function()
    return {kind = "Normalize", mean = {0, 0, 0}, std = {1, 1, 1}, to_tensor = true}
  end},
  RandomErasing = {pos = {"p"}, opts = {"p", "scale", "ratio", "value"}, build = function(a)
    return {kind = "RandomErasing", p = a.p or 0.5, scale = a.scale and pair(a.scale, "scale") or {0.02, 0.33},
            ratio = a.ratio and pair(a.ratio, "ratio") or {0.3, 3.3}, value = a.value or 0}
  end},
}
local kind_names = {}
for k in pairs(kinds) do kind_names[#kind_names + 1] = k end
table.sort(kind_names)

local Transforms = {}
Transforms.__index = Transforms
Transforms.__name = "aviary.data.Transforms"

--- data.transforms.compose(list) -> a transform pipeline (list items: {'Name', positional..., option = v})
function transforms.compose(list)
  if getmetatable(list) == Transforms then return list end
  if type(list) ~= "table" then fail("transforms", "expected a list of transforms, got %s", type(list)) end
  local out, normalize_at = {}, nil
  for i, item in ipairs(list) do
    if type(item) == "string" then item = {item} end
    if type(item) ~= "table" or type(item[1]) ~= "string" then
      fail("transforms", "transform %d: expected {'Name', ...}, got %s", i, type(item))
    end
    local name = item[1]
    local k = kinds[name]
    if not k then
      fail("transforms", "transform %d: unknown transform '%s' (did you mean '%s'?)", i, name,
        util.nearest(name, kind_names))
    end
    local args = {}
    for j = 2, #item do
      local pname = k.pos[j - 1]
      if not pname then fail("transforms", "transform %d (%s): too many positional arguments", i, name) end
      args[pname] = item[j]
    end
    for key, v in pairs(item) do
      if type(key) == "string" then
        local ok = false
        for _, o in ipairs(k.opts) do ok = ok or o == key end
        if not ok then
          fail("transforms", "transform %d (%s): unknown option '%s' (did you mean '%s'?)", i, name, key,
            util.nearest(key, k.opts))
        end
        args[key] = v
      end
    end
    local ok, t = pcall(k.build, args)
    if not ok then fail("transforms", "transform %d (%s): %s", i, name, tostring(t)) end
    if t.kind == "Normalize" then
      if normalize_at then
        -- ToTensor + Normalize (either order) is one step
        local prev = out[normalize_at]
        if prev.to_tensor then out[normalize_at] = t elseif not t.to_tensor then
          fail("transforms", "transform %d: Normalize given twice", i)
        end
        t = nil
      else
        normalize_at = #out + 1
      end
    end
    if t then t.to_tensor = nil; out[#out + 1] = t end
  end
  local ok, err = pcall(C.check, out)
  if not ok then fail("transforms", "%s", (tostring(err):gsub("^aviary%.data: ", ""))) end
  return setmetatable({specs = out, source = list}, Transforms)
end

function Transforms:__tostring()
  local parts = {}
  for _, t in ipairs(self.specs) do parts[#parts + 1] = t.kind end
  return "Transforms(" .. table.concat(parts, ", ") .. ")"
end

--- data.transforms.preset(name, split) -> the study's pipelines: 'default' or 'aggressive', 'train' or 'test'
function transforms.preset(name, split, opts)
  opts = check_opts("transforms.preset", opts, {"size", "resize"})
  local size, resize = opts.size or 224, opts.resize or 256
  if name ~= "default" and name ~= "aggressive" then
    fail("transforms.preset", "unknown preset '%s' (did you mean '%s'?)", tostring(name),
      util.nearest(tostring(name), {"default", "aggressive"}))
  end
  if split ~= "train" and split ~= "test" then
    fail("transforms.preset", "split must be 'train' or 'test', got '%s'", tostring(split))
  end
  if split == "test" then
    return transforms.compose({{"Resize", resize}, {"CenterCrop", size}, {"Normalize"}})
  end
  local list = {{"RandomResizedCrop", size}, {"RandomHorizontalFlip"}}
  if name == "aggressive" then
    list[#list + 1] = {"RandomPerspective", 0.25, p = 0.5}
    list[#list + 1] = {"RandomRotation", 10}
  end
  list[#list + 1] = {"Normalize"}
  return transforms.compose(list)
end

local function as_transforms(t)
  if t == nil then return transforms.compose({{"ToTensor"}}) end
  local ok, r = pcall(transforms.compose, t)
  if not ok then error(r, 3) end
  return r
end

------------------------------------------------------------------------------
-- datasets
------------------------------------------------------------------------------
local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function list_dir(dir, type_flag)
  local p = io.popen(("find -L %s -mindepth 1 -maxdepth 1 -type %s 2>/dev/null"):format(shell_quote(dir), type_flag))
  local out = {}
  for line in p:lines() do out[#out + 1] = line:match("([^/]+)$") end
  p:close()
  table.sort(out)
  return out
end

local function is_dir(path)
  local p = io.popen(("test -d %s && echo y"):format(shell_quote(path)))
  local r = p:read("l")
  p:close()
  return r == "y"
end

-- methods shared by the file datasets (samples = {path, target, bbox}, transform, classes)
local FileDataset = {}
FileDataset.__index = FileDataset

--- ds:size() -> number of samples
function FileDataset:size() return #self.samples end
FileDataset.__len = FileDataset.size

--- ds:get(i [, {epoch=, seed=}]) -> {input = float32 3 x H x W, target =, path =, bbox =}
function FileDataset:get(i, opts)
  opts = opts or {}
  local s = self.samples[i]
  if not s then fail("Dataset:get", "index %s out of range 1..%d", tostring(i), #self.samples) end
  local x = C.run_file(s.path, self.transform.specs,
    {seed = opts.seed or self.seed or 0, epoch = opts.epoch or 0, index = i - 1, max_pixels = self.max_pixels})
  return {input = x, target = s.target, path = s.path, bbox = s.bbox}
end

--- ds:class_counts() -> list: samples per class (1-based class order)
function FileDataset:class_counts()
  local c = {}
  for k = 1, #self.classes do c[k] = 0 end
  for _, s in ipairs(self.samples) do c[s.target] = (c[s.target] or 0) + 1 end
  return c
end

--- data.ImageFolder(root, {transform=, extensions=}): root/<class>/<image>; classes are the sorted folder names
function data.ImageFolder(root, opts)
  opts = check_opts("ImageFolder", opts, {"transform", "extensions", "seed", "max_pixels"})
  if type(root) ~= "string" then fail("ImageFolder", "expected a folder path, got %s", type(root)) end
  if not is_dir(root) then fail("ImageFolder", "no folder '%s'", root) end
  local exts = {}
  for _, e in ipairs(opts.extensions or {"jpg", "jpeg", "png"}) do exts[e:lower():gsub("^%.", "")] = true end
  local classes = list_dir(root, "d")
  if #classes == 0 then fail("ImageFolder", "no class folders in '%s'", root) end
  local ds = setmetatable({root = root, classes = classes, class_to_idx = {}, samples = {}, seed = opts.seed,
                           max_pixels = opts.max_pixels, transform = as_transforms(opts.transform)}, FileDataset)
  for ci, cname in ipairs(classes) do
    ds.class_to_idx[cname] = ci
    local n = 0
    for _, f in ipairs(list_dir(root .. "/" .. cname, "f")) do
      local ext = f:match("%.([^.]+)$")
      if ext and exts[ext:lower()] then
        ds.samples[#ds.samples + 1] = {path = root .. "/" .. cname .. "/" .. f, target = ci}
        n = n + 1
      end
    end
    if n == 0 then
      fail("ImageFolder", "class folder '%s' has no images (extensions: %s)", root .. "/" .. cname,
        table.concat(opts.extensions or {"jpg", "jpeg", "png"}, ", "))
    end
  end
  return ds
end

--- data.CUB(root, {split='train'|'test', transform=}): CUB-200-2011 through aviary.data.cub
function data.CUB(root, opts)
  opts = check_opts("CUB", opts, {"split", "transform", "seed", "max_pixels"})
  local split = opts.split or "train"
  if split ~= "train" and split ~= "test" then fail("CUB", "split must be 'train' or 'test', got '%s'", split) end
  local ok, cub = pcall(require, "aviary.data.cub")
  if not ok then fail("CUB", "aviary.data.cub is not available: %s", tostring(cub)) end
  local info = cub.read(root)
  local ds = setmetatable({root = root, split = split, classes = {}, class_to_idx = {}, samples = {},
                           seed = opts.seed, max_pixels = opts.max_pixels,
                           transform = as_transforms(opts.transform)}, FileDataset)
  for _, c in ipairs(info.classes) do
    ds.classes[c.id] = c.name
    ds.class_to_idx[c.name] = c.id
  end
  for _, im in ipairs(info.images) do
    if im.is_train == (split == "train") then
      ds.samples[#ds.samples + 1] = {path = root .. "/images/" .. im.path, target = im.class_id, bbox = im.bbox,
                                     id = im.id}
    end
  end
  return ds
end

local TensorDataset = {}
TensorDataset.__index = TensorDataset

--- data.TensorDataset(x, y): samples are x[i], y[i] along the first dimension
function data.TensorDataset(x, y)
  if not av.is_tensor(x) or not av.is_tensor(y) then fail("TensorDataset", "expected two tensors") end
  if x:size(1) ~= y:size(1) then
    fail("TensorDataset", "x has %d samples, y has %d", x:size(1), y:size(1))
  end
  return setmetatable({x = x, y = y}, TensorDataset)
end
function TensorDataset:size() return self.x:size(1) end
TensorDataset.__len = TensorDataset.size
function TensorDataset:get(i)
  if math.type(i) ~= "integer" or i < 1 or i > self:size() then
    fail("Dataset:get", "index %s out of range 1..%d", tostring(i), self:size())
  end
  local t = self.y[i]
  if av.is_tensor(t) and t:dim() == 0 then t = t:item() end
  return {input = self.x[i], target = t}
end

------------------------------------------------------------------------------
-- the loader
------------------------------------------------------------------------------
local DataLoader = {}
DataLoader.__index = DataLoader
DataLoader.__name = "aviary.data.DataLoader"

local loader_opts = {"batch_size", "shuffle", "drop_last", "num_workers", "prefetch", "seed", "on_error",
                     "max_pixels", "dct_scaling", "log", "pin_memory"}

-- where skipped files are reported: one line on stderr per file, unless log = false or a function
local function default_log(msg) io.stderr:write(msg, "\n") end

--- data.DataLoader(ds, {batch_size=, shuffle=, drop_last=, num_workers=, prefetch=, seed=, on_error=, max_pixels=,
--- log=function(msg) | false, pin_memory=false})
-- pin_memory = true puts batches in page-locked memory (when a GPU is usable), so that
-- batch.input:to('cuda', {non_blocking = true}) copies while the host goes on
function data.DataLoader(ds, opts)
  opts = check_opts("DataLoader", opts, loader_opts)
  if type(ds) ~= "table" or type(ds.size) ~= "function" then fail("DataLoader", "expected a dataset") end
  local bs = opts.batch_size or 1
  if math.type(bs) ~= "integer" or bs < 1 then fail("DataLoader", "batch_size must be a positive integer") end
  local nw = opts.num_workers or 0
  if math.type(nw) ~= "integer" or nw < 0 then fail("DataLoader", "num_workers must be a non-negative integer") end
  local on_error = opts.on_error or "skip"
  if on_error ~= "skip" and on_error ~= "error" then
    fail("DataLoader", "on_error must be 'skip' or 'error', got '%s'", tostring(on_error))
  end
  local self = setmetatable({dataset = ds, batch_size = bs, shuffle = opts.shuffle or false,
                             drop_last = opts.drop_last or false, num_workers = nw, prefetch = opts.prefetch or 2,
                             seed = opts.seed or 0, on_error = on_error, max_pixels = opts.max_pixels,
                             dct_scaling = opts.dct_scaling, epoch = 0,
                             pin_memory = opts.pin_memory and av.cuda.is_available() or false,
                             log = opts.log == nil and default_log or opts.log,
                             stats = {skipped = 0, skipped_total = 0, skipped_paths = {}, samples = 0, batches = 0}}, DataLoader)
  if ds.samples and ds.transform then
    local paths, targets = {}, {}
    for i, s in ipairs(ds.samples) do paths[i], targets[i] = s.path, s.target end
    local ok, l = pcall(C.loader, paths, targets, ds.transform.specs,
      {batch_size = bs, shuffle = self.shuffle, drop_last = self.drop_last, num_workers = nw,
       prefetch = self.prefetch, seed = self.seed, on_error = on_error, max_pixels = self.max_pixels,
       dct_scaling = self.dct_scaling, pin_memory = self.pin_memory})
    if not ok then error((tostring(l):gsub("^aviary%.data%.loader", "aviary.data.DataLoader")), 2) end
    self._c = l
  end
  return self
end

--- loader:size() -> batches per epoch
function DataLoader:size()
  local n = self.dataset:size()
  if self.drop_last then return n // self.batch_size end
  return (n + self.batch_size - 1) // self.batch_size
end
DataLoader.__len = DataLoader.size

--- loader:num_samples() -> samples per epoch (before skips), for progress bars
function DataLoader:num_samples()
  if self.drop_last then return self:size() * self.batch_size end
  return self.dataset:size()
end

-- the sample order of epoch e (1-based epochs), as the C loader draws it
local function order(self, e)
  return C.order(self.dataset:size(), e - 1, self.seed, self.shuffle)
end

--- loader:iter([{progress = true | label}]) -> iterator over the batches of the next epoch
function DataLoader:iter(opts)
  opts = check_opts("DataLoader:iter", opts, {"progress"})
  local it = self:_iter()
  if not opts.progress then return it end
  local bar = require("aviary.progress").bar(self:num_samples(),
    {label = type(opts.progress) == "string" and opts.progress or ("epoch " .. self.epoch), unit = "img"})
  return function()
    local b = it()
    if b then bar:update(nil, self.stats.samples + self.stats.skipped) else bar:finish() end
    return b
  end
end

function DataLoader:_iter()
  self.epoch = self.epoch + 1
  local e = self.epoch
  local st = self.stats
  st.samples, st.batches, st.skipped, st.skipped_paths = 0, 0, 0, {}
  if self._c then
    local c = self._c
    c:start_epoch(e - 1)
    local ds = self.dataset
    return function()
      while true do
        local x, y, idx, skipped = c:next()
        if not x then return nil end
        for _, i in ipairs(skipped) do
          st.skipped, st.skipped_total = st.skipped + 1, st.skipped_total + 1
          st.skipped_paths[#st.skipped_paths + 1] = ds.samples[i].path
          if self.log then
            self.log(("aviary.data: skipped '%s' (unreadable, corrupt or over the pixel limit; on_error = 'skip'; "
              .. "%d skipped so far)"):format(ds.samples[i].path, st.skipped_total))
          end
        end
        if #idx > 0 then
          local paths, bboxes = {}, nil
          for k, i in ipairs(idx) do
            paths[k] = ds.samples[i].path
            if ds.samples[i].bbox then bboxes = bboxes or {}; bboxes[k] = ds.samples[i].bbox end
          end
          st.samples, st.batches = st.samples + #idx, st.batches + 1
          return {input = x, target = y, path = paths, index = idx, bbox = bboxes, n = #idx}
        end
      end
    end
  end
  -- in-memory datasets: gathered on the calling thread
  local ord = order(self, e)
  local nb, bs, ds = self:size(), self.batch_size, self.dataset
  local b = 0
  return function()
    b = b + 1
    if b > nb then return nil end
    local idx = {}
    for k = (b - 1) * bs + 1, math.min(b * bs, #ord) do idx[#idx + 1] = ord[k] end
    local batch
    if ds.x then
      batch = {input = ds.x:index_select(1, idx), target = ds.y:index_select(1, idx), index = idx, n = #idx}
    else
      local xs, ys = {}, {}
      for k, i in ipairs(idx) do
        local s = ds:get(i)
        xs[k], ys[k] = s.input, s.target
      end
      batch = {input = av.stack(xs), target = av.tensor(ys):long(), index = idx, n = #idx}
    end
    st.samples, st.batches = st.samples + #idx, st.batches + 1
    if self.pin_memory then batch.input, batch.target = batch.input:pin_memory(), batch.target:pin_memory() end
    return batch
  end
end

--- loader:close(): stops and joins the workers (also done by the garbage collector)
function DataLoader:close()
  if self._c then self._c:close() end
end
DataLoader.__close = DataLoader.close

return data
