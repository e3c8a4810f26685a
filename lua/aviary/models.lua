--- aviary.models: the torchvision classification models the CUB study uses,
-- with torchvision's architecture, parameter names, parameter counts and
-- default initialisation, so weights move between the two unchanged.
--   local models = require "aviary.models"
--   local net = models.create("resnet50", {num_classes = 200, weights = "resnet50.safetensors", ignore_head = true})
--   net:replace_head(200)        -- the study's model.fc = nn.Linear(fc.in_features, 200)
local av = require "aviary"
local nn = require "aviary.nn"

local models = {}
local registry = {}

-- families register here: spec = {build = function(opts) -> module, head = 'fc'
-- | 'classifier.6' | ..., family = 'resnet', input_size = 224, options = {name = default}}
function models.register(name, spec)
  assert(type(name) == "string" and type(spec) == "table" and type(spec.build) == "function" and type(spec.head) == "string",
    "models.register(name, {build=, head=, ...})")
  registry[name] = spec
end

-- the families live in their own files; each registers its models when loaded
local families = {"resnet", "vgg", "mobilenet", "googlenet", "inception", "densenet"}
local loaded = false
local function load_families()
  if loaded then return end
  loaded = true
  for _, f in ipairs(families) do
    local ok, err = pcall(require, "aviary.models." .. f)
    if not ok and not tostring(err):find("module 'aviary.models." .. f .. "' not found", 1, true) then
      error(err, 0)
    end
  end
end

--- models.relu(x) -> relu(x), in place when no autograd graph runs through x
-- (evaluation, no_grad: torch's ReLU(inplace=True) saves the same memory)
function models.relu(x)
  if x.requires_grad then return av.relu(x) end
  return x:relu_()
end

-- conv (no bias) -> batch norm (eps 0.001) -> relu: GoogLeNet's and Inception's unit
local BasicConv2d = nn.Module:extend("BasicConv2d")
models.BasicConv2d = BasicConv2d
function BasicConv2d:__init(cin, cout, k, opts)
  local o = {bias = false}
  for key, v in pairs(opts or {}) do o[key] = v end
  self.conv = nn.Conv2d(cin, cout, k, o)
  self.bn = nn.BatchNorm2d(cout, {eps = 0.001})
end
function BasicConv2d:forward(x) return models.relu(self.bn(self.conv(x))) end

--- models.transform_input(x) -> x re-normalised from ImageNet's mean/std to
-- (x - 0.5) / 0.5 per channel: torchvision's _transform_input of GoogLeNet and
-- Inception v3 (their ImageNet weights were trained on that normalisation)
local TRANSFORM = {{0.229 / 0.5, (0.485 - 0.5) / 0.5}, {0.224 / 0.5, (0.456 - 0.5) / 0.5},
                   {0.225 / 0.5, (0.406 - 0.5) / 0.5}}
function models.transform_input(x)
  local parts = {}
  for c = 1, 3 do parts[c] = x:narrow(2, c, 1) * TRANSFORM[c][1] + TRANSFORM[c][2] end
  return av.cat(parts, 2)
end

--- models.list() -> sorted list of model names
function models.list()
  load_families()
  local out = {}
  for k in pairs(registry) do out[#out + 1] = k end
  table.sort(out)
  return out
end

--- models.spec(name) -> the registry entry (head name, input size, family)
function models.spec(name)
  load_families()
  local s = registry[name]
  if not s then
    error(("aviary.models: unknown model '%s' (did you mean '%s'? models.list() gives all)"):format(tostring(name),
      nn._nearest(tostring(name), models.list())), 2)
  end
  return s
end

-- the state_dict names of the classifier head ('fc.weight', 'fc.bias')
local function head_keys(model, head)
  local out = {}
  local m = model:get(head)
  for n in m:named_parameters() do out[#out + 1] = head .. "." .. n end
  return out
end

--- models.create(name, {num_classes=1000, weights=path, ignore_head=false, strict=true, ...})
-- builds a model; `weights` loads a safetensors file with torchvision's
-- names; `ignore_head=true` keeps the new head when the file's head has
-- another number of classes (transfer learning). Other options go to the
-- family's builder (for example dropout).
function models.create(name, opts)
  local spec = models.spec(name)
  opts = opts or {}
  if type(opts) ~= "table" then error("models.create: options must be a table, got " .. type(opts), 2) end
  local valid = {num_classes = true, weights = true, ignore_head = true, strict = true}
  for k in pairs(spec.options or {}) do valid[k] = true end
  local build_opts = {}
  for k, v in pairs(opts) do
    if not valid[k] then
      local names = {}
      for n in pairs(valid) do names[#names + 1] = n end
      table.sort(names)
      error(("models.create('%s'): unknown option '%s' (did you mean '%s'?)"):format(name, tostring(k),
        nn._nearest(tostring(k), names)), 2)
    end
    if k ~= "weights" and k ~= "ignore_head" and k ~= "strict" then build_opts[k] = v end
  end
  for k, v in pairs(spec.options or {}) do if build_opts[k] == nil then build_opts[k] = v end end
  build_opts.num_classes = build_opts.num_classes or 1000
  if math.type(build_opts.num_classes) ~= "integer" or build_opts.num_classes < 1 then
    error(("models.create('%s'): num_classes must be a positive integer, got %s"):format(name, tostring(build_opts.num_classes)), 2)
  end
  local model = spec.build(build_opts)
  model.arch = name
  model.head_name = spec.head
  model.input_size = spec.input_size or 224
  if opts.weights then
    local ok, err = pcall(models.load_weights, model, opts.weights, {ignore_head = opts.ignore_head, strict = opts.strict})
    if not ok then error(("models.create('%s'): %s"):format(name, tostring(err)), 2) end
  end
  return model
end

--- models.load_weights(model, path, {ignore_head=false, strict=true}) -> report
-- report = {missing_keys=, unexpected_keys=, skipped_head=}
function models.load_weights(model, path, opts)
  opts = opts or {}
  if type(path) ~= "string" then error("weights must be a file path, got " .. type(path), 2) end
  if path:match("%.pth?$") or path:match("%.pt$") then
    error(("'%s' is a PyTorch pickle, which aviary does not read; convert it once with "
      .. "tools/pth2safetensors.py (needs PyTorch) and pass the .safetensors file"):format(path), 2)
  end
  local f = io.open(path, "rb")
  if not f then error(("cannot open weights file '%s' (check the path)"):format(path), 2) end
  f:close()
  local ok, sd = pcall(av.load, path)
  if not ok then error(("'%s' is not a readable safetensors file: %s"):format(path, tostring(sd)), 2) end
  local skip = {}
  local skipped = false
  if opts.ignore_head and model.head_name then
    local own = model:state_dict()
    for _, k in ipairs(head_keys(model, model.head_name)) do
      local t = sd[k]
      if t ~= nil then
        local a, b = t:size(), own[k]:size()
        local same = #a == #b
        if same then for i = 1, #a do if a[i] ~= b[i] then same = false end end end
        if not same then skip[#skip + 1] = k; skipped = true end
      end
    end
  end
  local missing_ok = {}
  for _, k in ipairs(skip) do missing_ok[k] = true end
  local rep = model:load_state_dict(sd, {strict = false, skip = skip})
  local missing = {}
  for _, k in ipairs(rep.missing_keys) do if not missing_ok[k] then missing[#missing + 1] = k end end
  local strict = opts.strict ~= false
  if strict and (#missing > 0 or #rep.unexpected_keys > 0) then
    local parts = {}
    if #missing > 0 then parts[#parts + 1] = ("%d missing keys: %s"):format(#missing, table.concat(missing, ", ")) end
    if #rep.unexpected_keys > 0 then
      parts[#parts + 1] = ("%d unexpected keys: %s"):format(#rep.unexpected_keys, table.concat(rep.unexpected_keys, ", "))
    end
    error(("weights '%s' do not fit %s: %s (were they saved from another architecture? pass strict=false to load what matches)")
      :format(path, model.arch or model:type_name(), table.concat(parts, "; ")), 2)
  end
  rep.missing_keys = missing
  rep.skipped_head = skipped and skip or nil
  return rep
end

--- model:replace_head(n) -> the new head; the study's
-- `model.fc = nn.Linear(model.fc.in_features, n)` for each family's head
function nn.Module:replace_head(n)
  if math.type(n) ~= "integer" or n < 1 then
    error("replace_head: number of classes must be a positive integer, got " .. tostring(n), 2)
  end
  local name = rawget(self, "head_name")
  if not name then
    -- not from models.create: the last Linear layer
    for k, m in self:named_modules() do if m:type_name() == "Linear" then name = k end end
    if not name then error("replace_head: this model has no Linear layer to replace", 2) end
  end
  local old = self:get(name)
  local head
  if old:type_name() == "Linear" then
    head = nn.Linear(old.in_features, n, {bias = old.bias ~= nil})
  elseif old:type_name() == "Conv2d" then
    head = nn.Conv2d(old.in_channels, n, old.kernel_size, {stride = old.stride, bias = old.bias ~= nil})
  else
    error(("replace_head: the head '%s' is a %s, expected Linear or Conv2d"):format(name, old:type_name()), 2)
  end
  self:set(name, head)
  return head
end

return models
