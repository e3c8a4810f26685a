--- aviary.config: the training recipe's configuration — schema, defaults (the study's), loading
-- a config file, command-line overrides and validation. See docs/training.md, "Recipe configuration".
--   local config = require "aviary.config"
--   local cfg = config.resolve("resnet50", {"TRAIN.optimizer.lr=0.01"})   -- name or path
--   print(cfg.TRAIN.optimizer.lr, config.serialize(cfg))
-- A config file is a Lua chunk returning a table with the sections MODEL, DATA, TRAIN, DIRS,
-- SYSTEM; whatever it leaves out takes the default. Unknown keys anywhere are errors naming
-- the nearest valid keys; a value of the wrong type is an error naming the key and the type.
local util = require "aviary.util"

local config = {}

-- leaf = {type, default, doc [, choices]}; type 'number' | 'integer' | 'boolean' | 'string' |
-- 'off_or_choice' (false, or one of the choices); opt = true: may be nil (no value)
local function leaf(t, default, doc, extra)
  local l = {leaf = true, type = t, default = default, doc = doc}
  for k, v in pairs(extra or {}) do l[k] = v end
  return l
end

-- the order of sections and keys when written back (config.serialize) and documented
config.SCHEMA = {
  {"MODEL", {
    {"name", leaf("string", "resnet50", "architecture: any name of aviary.models.list()")},
    {"weights", leaf("string", nil, "safetensors file with torchvision's names (ImageNet weights) for transfer learning; nil: from scratch", {opt = true})},
    {"ignore_head", leaf("boolean", true, "keep the new head when the weights' head has another number of classes")},
    {"num_classes", leaf("integer", 200, "classes of the new head; must equal the class folders in the data")},
    {"freeze_backbone", leaf("boolean", false, "train only the head (model.head_name); the rest is frozen")},
  }},
  {"DATA", {
    {"dir", leaf("string", "data/images", "the prepared dataset (recipes/prepare_cub.lua --dst=...)")},
    {"format", leaf("string", "folder", "'folder': DIR/<subdir>/<class>/*.jpg; 'cub': DIR is an extracted CUB_200_2011 folder (official split)", {choices = {"folder", "cub"}})},
    {"train_subdir", leaf("string", "train", "training images under DIR (format 'folder')")},
    {"test_subdir", leaf("string", "test", "test (validation) images under DIR (format 'folder')")},
    {"preset", leaf("string", "default", "training augmentation: 'default' (RandomResizedCrop + flip) or 'aggressive' (+ perspective, rotation)", {choices = {"default", "aggressive"}})},
    {"crop", leaf("integer", 224, "input size: RandomResizedCrop (train) and CenterCrop (test)")},
    {"resize", leaf("integer", 256, "test images: shorter side resized to this before the centre crop")},
  }},
  {"TRAIN", {
    {"batch_size", leaf("integer", 16, "images per batch")},
    {"num_workers", leaf("integer", 2, "DataLoader decoding threads (0: on the main thread)")},
    {"num_epochs", leaf("integer", 40, "maximum epochs")},
    {"loss", {
      {"label_smoothing", leaf("number", 0, "CrossEntropyLoss label smoothing")},
    }},
    {"optimizer", {
      {"type", leaf("string", "SGD", "'SGD', 'Adam' or 'AdamW'", {choices = {"SGD", "Adam", "AdamW"}})},
      {"lr", leaf("number", 1e-3, "learning rate")},
      {"momentum", leaf("number", 0.9, "SGD momentum")},
      {"nesterov", leaf("boolean", true, "SGD Nesterov momentum")},
      {"weight_decay", leaf("number", 0, "L2 penalty (decoupled for AdamW)")},
    }},
    {"scheduler", {
      {"type", leaf("string", "StepLR", "'StepLR', 'ExponentialLR', 'CosineAnnealingLR' (over num_epochs), 'ReduceLROnPlateau' (on `metric`), 'OneCycleLR' (stepped every batch) or 'none'",
        {choices = {"StepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau", "OneCycleLR", "none"}})},
      {"step_size", leaf("integer", 7, "StepLR: epochs between decays")},
      {"gamma", leaf("number", 0.1, "StepLR and ExponentialLR: decay factor; ReduceLROnPlateau: the factor")},
      {"patience", leaf("integer", 3, "ReduceLROnPlateau: epochs without improvement before reducing")},
      {"metric", leaf("string", "val_loss", "ReduceLROnPlateau: the watched metric (minimised for *loss, maximised otherwise)")},
      {"max_lr", leaf("number", 0.01, "OneCycleLR: the peak learning rate")},
    }},
    {"early_stopping", {
      {"patience", leaf("integer", 5, "epochs without improvement before stopping; 0 turns it off")},
      {"metric", leaf("string", "val_accuracy", "watched metric (val_accuracy, val_loss, val_f1, ...); also picks best.ckpt")},
    }},
    {"amp", leaf("off_or_choice", false, "mixed precision on CUDA: false, 'bf16' (autocast) or 'fp16' (autocast + GradScaler); a no-op with a warning on the CPU", {choices = {"bf16", "fp16"}})},
    {"grad_clip", leaf("number", nil, "max total gradient norm; nil: no clipping", {opt = true})},
  }},
  {"DIRS", {
    {"working_dir", leaf("string", "models", "run folders go to WORKING_DIR/<run>/")},
  }},
  {"SYSTEM", {
    {"seed", leaf("integer", 1, "seeds the weights' initialisation, the shuffling and the augmentation")},
    {"device", leaf("string", "cpu", "'cpu' or 'cuda' ('cuda:N')")},
    {"threads", leaf("integer", 2, "compute threads (av.set_num_threads)")},
  }},
}

-- lookups: path 'TRAIN.optimizer.lr' -> leaf; every valid path (sections, sub-tables, leaves)
local LEAVES, PATHS, NODES = {}, {}, {}
local function index(list, prefix)
  for _, kv in ipairs(list) do
    local k, v = kv[1], kv[2]
    local p = prefix and (prefix .. "." .. k) or k
    PATHS[#PATHS + 1] = p
    if v.leaf then LEAVES[p] = v else NODES[p] = v; index(v, p) end
  end
end
index(config.SCHEMA, nil)
config.LEAVES = LEAVES

local function fail(fmt, ...) error("config: " .. fmt:format(...), 0) end

local function keys_of(list)
  local out = {}
  for _, kv in ipairs(list) do out[#out + 1] = kv[1] end
  return out
end

-- "unknown key" for a dotted path: the nearest valid full key, and the valid keys at the level
-- where the path goes wrong, nearest first
local function unknown(path)
  local node, prefix = config.SCHEMA, nil
  local bad = path
  for comp in path:gmatch("[^.]+") do
    local child
    for _, kv in ipairs(node) do if kv[1] == comp then child = kv[2] end end
    if not child or child.leaf then bad = comp; break end
    node, prefix = child, prefix and (prefix .. "." .. comp) or comp
  end
  local keys = keys_of(node)
  table.sort(keys, function(a, b)
    local da, db = util.distance(bad, a), util.distance(bad, b)
    if da ~= db then return da < db end
    return a < b
  end)
  local near = {}
  for i = 1, math.min(3, #keys) do near[i] = keys[i] end
  local full = util.nearest(path, PATHS)
  fail("unknown key '%s' (did you mean '%s'? nearest keys %s: %s)", path, full,
    prefix and ("in " .. prefix) or "at the top", table.concat(near, ", "))
end

--- config.defaults() -> a fresh table of the defaults
function config.defaults()
  local function build(list)
    local t = {}
    for _, kv in ipairs(list) do
      local v = kv[2]
      if v.leaf then t[kv[1]] = v.default else t[kv[1]] = build(v) end
    end
    return t
  end
  return build(config.SCHEMA)
end

local function type_ok(l, v)
  if l.type == "off_or_choice" then return v == false or type(v) == "string" end
  if l.type == "integer" then return math.type(v) == "integer" or (math.type(v) == "float" and v == math.floor(v) and v == v) end
  return type(v) == l.type
end

local function describe(v)
  if type(v) == "string" then return ("string '%s'"):format(v) end
  return ("%s %s"):format(type(v), tostring(v))
end

-- merges src over dst following the schema; path for messages
local function merge(dst, src, list, path)
  if type(src) ~= "table" then fail("%s must be a table, got %s", path or "the config", describe(src)) end
  local by = {}
  for _, kv in ipairs(list) do by[kv[1]] = kv[2] end
  for k, v in pairs(src) do
    local p = path and (path .. "." .. tostring(k)) or tostring(k)
    local s = by[k]
    if s == nil then unknown(p) end
    if s.leaf then
      if not type_ok(s, v) then
        if s.type == "off_or_choice" then fail("%s must be false or one of '%s', got %s", p, table.concat(s.choices, "', '"), describe(v)) end
        fail("%s must be %s %s, got %s", p, s.type == "integer" and "an" or "a", s.type, describe(v))
      end
      if s.type == "integer" then v = math.tointeger(v) end
      dst[k] = v
    else
      merge(dst[k], v, s, p)
    end
  end
end

local function in_list(v, list)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

--- config.parse_value(path, text) -> the value typed by the key's schema type
function config.parse_value(path, text)
  local l = LEAVES[path]
  if not l then
    if NODES[path] then fail("'%s' is a section; set one of its keys, e.g. %s.%s=...", path, path, NODES[path][1][1]) end
    unknown(path)
  end
  if l.opt and (text == "nil" or text == "none" or text == "") then return nil, true end
  if l.type == "string" then return text end
  if l.type == "off_or_choice" then
    local off = ({["false"] = true, ["0"] = true, no = true, off = true, none = true})[text:lower()]
    if off then return false end
    if not in_list(text, l.choices) then
      fail("%s expects false or one of %s, got '%s' (did you mean '%s'?)", path, table.concat(l.choices, ", "), text,
        util.nearest(text, l.choices))
    end
    return text
  end
  if l.type == "boolean" then
    local b = ({["true"] = true, ["1"] = true, yes = true, on = true, ["false"] = false, ["0"] = false, no = false, off = false})[text:lower()]
    if b == nil then fail("%s expects a boolean (true/false), got '%s'", path, text) end
    return b
  end
  local n = tonumber(text)
  if n == nil then fail("%s expects a %s, got '%s'", path, l.type, text) end
  if l.type == "integer" then
    local i = math.tointeger(n)
    if not i then fail("%s expects an integer, got '%s'", path, text) end
    return i
  end
  return n
end

--- config.apply_override(cfg, "KEY.sub=value") -> cfg
function config.apply_override(cfg, arg)
  local path, text = tostring(arg):match("^([%w_%.]+)=(.*)$")
  if not path then fail("an override is KEY.sub=value (e.g. TRAIN.optimizer.lr=0.01), got '%s'", tostring(arg)) end
  local v, is_nil = config.parse_value(path, text)
  local t = cfg
  local parts = {}
  for p in path:gmatch("[^.]+") do parts[#parts + 1] = p end
  for i = 1, #parts - 1 do t = t[parts[i]] end
  if is_nil then t[parts[#parts]] = nil else t[parts[#parts]] = v end
  return cfg
end


--- config.validate(cfg) -> cfg; ranges, choices, and the model's name
function config.validate(cfg)
  for path, l in pairs(LEAVES) do
    local t = cfg
    for p in path:gmatch("[^.]+") do if type(t) == "table" then t = t[p] else t = nil end end
    if t == nil and not l.opt then fail("%s is missing", path) end
    if t ~= nil and not type_ok(l, t) then
      if l.type == "off_or_choice" then fail("%s must be false or one of '%s', got %s", path, table.concat(l.choices, "', '"), describe(t)) end
      fail("%s must be a %s, got %s", path, l.type, describe(t))
    end
    if t ~= nil and t ~= false and l.choices and not in_list(t, l.choices) then
      fail("%s must be one of %s, got '%s' (did you mean '%s'?)", path, table.concat(l.choices, ", "), tostring(t),
        util.nearest(tostring(t), l.choices))
    end
  end
  local function positive(path, v, zero_ok)
    if v < (zero_ok and 0 or 1) or (not zero_ok and v <= 0) then
      fail("%s must be %s, got %s", path, zero_ok and "0 or more" or "positive", tostring(v))
    end
  end
  local M, D, T, S = cfg.MODEL, cfg.DATA, cfg.TRAIN, cfg.SYSTEM
  positive("MODEL.num_classes", M.num_classes)
  positive("DATA.crop", D.crop); positive("DATA.resize", D.resize)
  positive("TRAIN.batch_size", T.batch_size); positive("TRAIN.num_workers", T.num_workers, true)
  positive("TRAIN.num_epochs", T.num_epochs); positive("SYSTEM.threads", S.threads)
  if not (T.optimizer.lr > 0) then fail("TRAIN.optimizer.lr must be positive, got %s", tostring(T.optimizer.lr)) end
  positive("TRAIN.optimizer.momentum", T.optimizer.momentum, true)
  positive("TRAIN.optimizer.weight_decay", T.optimizer.weight_decay, true)
  if T.optimizer.type == "SGD" and T.optimizer.nesterov and T.optimizer.momentum <= 0 then
    fail("TRAIN.optimizer.nesterov needs TRAIN.optimizer.momentum > 0 (or set nesterov=false)")
  end
  if not (T.loss.label_smoothing >= 0 and T.loss.label_smoothing < 1) then
    fail("TRAIN.loss.label_smoothing must be in [0, 1), got %s", tostring(T.loss.label_smoothing))
  end
  positive("TRAIN.scheduler.step_size", T.scheduler.step_size)
  if not (T.scheduler.gamma > 0) then fail("TRAIN.scheduler.gamma must be positive") end
  positive("TRAIN.early_stopping.patience", T.early_stopping.patience, true)
  if not T.early_stopping.metric:match("^train_.") and not T.early_stopping.metric:match("^val_.") then
    fail("TRAIN.early_stopping.metric must be a metric name such as 'val_accuracy' or 'val_loss', got '%s'", T.early_stopping.metric)
  end
  if T.grad_clip ~= nil and not (T.grad_clip > 0) then fail("TRAIN.grad_clip must be positive (or nil for none)") end
  if not (S.device == "cpu" or S.device:match("^cuda$") or S.device:match("^cuda:%d+$")) then
    fail("SYSTEM.device must be 'cpu', 'cuda' or 'cuda:N', got '%s'", S.device)
  end
  local ok, models = pcall(require, "aviary.models")
  if ok then
    local names = models.list()
    if not in_list(M.name, names) then
      fail("MODEL.name: unknown model '%s' (did you mean '%s'? aviary.models.list() gives all)", M.name,
        util.nearest(M.name, names))
    end
  end
  return cfg
end

--- config.configs_dir: where config names are looked up
config.configs_dir = (debug.getinfo(1, "S").source:match("^@(.*)/lua/aviary/config%.lua$") or ".") .. "/recipes/configs"

--- config.list() -> the names of the shipped configs (recipes/configs/*.lua)
function config.list()
  local out = {}
  local p = io.popen("ls -1 '" .. config.configs_dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  if p then
    for l in p:lines() do local n = l:match("^(.+)%.lua$"); if n then out[#out + 1] = n end end
    p:close()
  end
  table.sort(out)
  return out
end

local function file_exists(p) local f = io.open(p, "r"); if f then f:close(); return true end return false end

--- config.find(name_or_path) -> path of the config file; a name is looked up in recipes/configs
function config.find(name)
  if type(name) ~= "string" or name == "" then fail("expected a config name or path") end
  if name:find("/", 1, true) or name:match("%.lua$") then
    if file_exists(name) then return name end
    fail("config file '%s' not found", name)
  end
  local p = config.configs_dir .. "/" .. name .. ".lua"
  if file_exists(p) then return p end
  local names = config.list()
  fail("unknown config '%s' (did you mean '%s'? configs in %s: %s)", name, util.nearest(name, names) or "?",
    config.configs_dir, table.concat(names, ", "))
end

--- config.load_file(path) -> the table the file returns (run in a sandbox with math and string)
function config.load_file(path)
  local env = {math = math, string = string, table = table, tostring = tostring, tonumber = tonumber,
               pairs = pairs, ipairs = ipairs, os = {getenv = os.getenv}}
  local chunk, err = loadfile(path, "t", env)
  if not chunk then fail("cannot read %s: %s", path, tostring(err)) end
  local ok, t = pcall(chunk)
  if not ok then fail("%s failed: %s", path, tostring(t)) end
  if type(t) ~= "table" then fail("%s must return a table (return {MODEL = {...}, ...}), got %s", path, type(t)) end
  return t
end

--- config.resolve(name_or_path_or_table, overrides) -> cfg: defaults, then the file, then the overrides; validated
function config.resolve(src, overrides)
  local cfg = config.defaults()
  local file_cfg = type(src) == "table" and src or config.load_file(config.find(src))
  merge(cfg, file_cfg, config.SCHEMA, nil)
  for _, o in ipairs(overrides or {}) do config.apply_override(cfg, o) end
  return config.validate(cfg)
end

local function quote(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if math.type(v) == "float" then
    local s = ("%.17g"):format(v)
    if tonumber(("%.15g"):format(v)) == v then s = ("%.15g"):format(v) end
    if not s:find("[%.eEni]") then s = s .. ".0" end
    return s
  end
  return tostring(v)
end

--- config.serialize(cfg [, header]) -> Lua source `return {...}` in the schema's order (every key)
function config.serialize(cfg, header)
  local out = {}
  if header then for l in header:gmatch("[^\n]+") do out[#out + 1] = "-- " .. l end end
  out[#out + 1] = "return {"
  local function emit(list, t, indent)
    for _, kv in ipairs(list) do
      local k, s = kv[1], kv[2]
      local v = t and t[k]
      if s.leaf then
        if v == nil then out[#out + 1] = ("%s%s = nil,"):format(indent, k)
        else out[#out + 1] = ("%s%s = %s,"):format(indent, k, quote(v)) end
      else
        out[#out + 1] = ("%s%s = {"):format(indent, k)
        emit(s, v, indent .. "  ")
        out[#out + 1] = indent .. "},"
      end
    end
  end
  emit(config.SCHEMA, cfg, "  ")
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

--- config.flat(cfg) -> list of {path, value, default, doc} for every leaf, in schema order
function config.flat(cfg)
  local out = {}
  local function walk(list, t, prefix)
    for _, kv in ipairs(list) do
      local p = prefix and (prefix .. "." .. kv[1]) or kv[1]
      if kv[2].leaf then out[#out + 1] = {path = p, value = t and t[kv[1]], default = kv[2].default, doc = kv[2].doc}
      else walk(kv[2], t and t[kv[1]], p) end
    end
  end
  walk(config.SCHEMA, cfg, nil)
  return out
end

return config
