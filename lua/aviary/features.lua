--- aviary.features: a layer's activations over a dataset (through a forward hook), saved with their
-- labels and paths, and the manifolds that show how the network groups the classes.
--
--   local features = require "aviary.features"
--   local f = features.extract(net, loader, {layer = "avgpool"})  -- f.features N x 512, f.labels, f.paths, f.logits
--   features.save("models/run/features/avgpool.safetensors", f)
--   local p = features.pca(f.features, {n_components = 2})        -- aviary.manifold.pca
--   local y = features.tsne(f.features, {perplexity = 50, learning_rate = 150})
--
-- The default layer is the head's input (the pooled features: avgpool for ResNets, 512-d for
-- ResNet-18, 2048-d for ResNet-50/152, as the study hooked). Activations with spatial size are
-- flattened, or pooled over space with pool = 'avg' | 'max'.
local av = require "aviary"

local features = {}

local function check_opts(who, opts, allowed)
  opts = opts or {}
  if type(opts) ~= "table" then error(who .. ": options must be a table", 3) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      error(("%s: unknown option '%s' (valid: %s)"):format(who, tostring(k), table.concat(names, ", ")), 3)
    end
  end
  return opts
end

--- features.layer_names(model) -> every module's dotted name, in order (the model itself excluded)
function features.layer_names(model)
  local out = {}
  for name in model:named_modules() do if name ~= "" then out[#out + 1] = name end end
  return out
end

--- features.layer(model, name) -> the module at a dotted name; an unknown name is an error that lists
-- the layers (all of them when few, else the top-level ones and the nearest names)
function features.layer(model, name)
  local names = features.layer_names(model)
  for _, n in ipairs(names) do
    if n == name then return model:get(name) end
  end
  local util = require "aviary.util"
  local listed
  if #names <= 40 then
    listed = "its layers: " .. table.concat(names, ", ")
  else
    local top = {}
    for n in model:named_children() do top[#top + 1] = n end
    local scored = {}
    for _, n in ipairs(names) do scored[#scored + 1] = {n, util.distance(tostring(name), n)} end
    table.sort(scored, function(a, b) return a[2] < b[2] or (a[2] == b[2] and a[1] < b[1]) end)
    local near = {}
    for i = 1, math.min(5, #scored) do near[i] = scored[i][1] end
    listed = ("nearest: %s; top-level layers: %s; %d layers in all (features.layer_names(model) lists them)")
      :format(table.concat(near, ", "), table.concat(top, ", "), #names)
  end
  error(("features: the model has no layer '%s' (%s)"):format(tostring(name), listed), 3)
end

local function flatten(x, pool)
  if x:dim() > 2 then
    if pool == "avg" then x = x:flatten(3):mean(3)
    elseif pool == "max" then x = x:flatten(3):amax(3)
    else x = x:flatten(2) end
  end
  return x
end

--- features.extract(model, loader, {layer=, pool=nil|'avg'|'max', logits=true, progress=true, label=})
-- -> {features = N x D float32, labels = N int64 (1-based), paths = {...}, logits = N x C float32,
--     layer = name, seconds = }
-- Runs the model in evaluate mode without gradients over every batch of `loader` (a DataLoader or
-- anything with iter() giving {input, target, path}); restores the model's mode afterwards.
function features.extract(model, loader, opts)
  local who = "features.extract"
  opts = check_opts(who, opts, {layer = true, pool = true, logits = true, progress = true, label = true})
  if type(model) ~= "table" or type(model.named_modules) ~= "function" then error(who .. ": expected a model", 2) end
  if type(loader) ~= "table" or type(loader.iter) ~= "function" then error(who .. ": expected a data loader", 2) end
  if opts.pool ~= nil and opts.pool ~= "avg" and opts.pool ~= "max" then
    error(who .. ": pool must be 'avg', 'max' or nil (flatten)", 2)
  end
  local layer_name = opts.layer
  local target_mod, use_input
  if layer_name == nil or layer_name == "" then
    local head = rawget(model, "head_name")
    if head then
      target_mod, use_input, layer_name = model:get(head), true, head .. ":input"
    end
  else
    target_mod = features.layer(model, layer_name)
  end
  local captured
  local handle
  if target_mod then
    if use_input then
      handle = target_mod:register_forward_pre_hook(function(_, inputs) captured = inputs[1] end)
    else
      handle = target_mod:register_forward_hook(function(_, _, out) captured = out end)
    end
  end
  local was_training = model.training
  model:evaluate()
  local feats, logits, labels, paths = {}, {}, {}, {}
  local total = type(loader.num_samples) == "function" and loader:num_samples() or nil
  local bar = opts.progress ~= false and total and require("aviary.progress").bar(total,
    {label = opts.label or "features", unit = "img"}) or nil
  local t0 = av.clock()
  local ok, err = pcall(function()
    local _ <close> = av.no_grad()
    for b in loader:iter() do
      captured = nil
      local out = model(b.input)
      local f = target_mod and captured or out
      if not av.is_tensor(f) then error(("%s: layer '%s' gave no tensor"):format(who, layer_name), 0) end
      feats[#feats + 1] = flatten(f, opts.pool):float():contiguous()
      if opts.logits ~= false then logits[#logits + 1] = out:float():contiguous() end
      labels[#labels + 1] = b.target:long()
      for _, p in ipairs(b.path or {}) do paths[#paths + 1] = p end
      if bar then bar:update(b.n or b.input:size(1)) end
    end
  end)
  if handle then handle.remove() end
  if was_training then model:train() end
  if bar then bar:finish() end
  if not ok then error(err, 0) end
  if #feats == 0 then error(who .. ": the loader gave no batch (is the split empty?)", 2) end
  return {features = av.cat(feats, 1), logits = #logits > 0 and av.cat(logits, 1) or nil, labels = av.cat(labels, 1),
          paths = paths, layer = layer_name or "output", seconds = av.clock() - t0}
end

--- features.save(path, f [, meta]) -- features, labels (and logits) as safetensors; paths, layer and
-- meta (strings) in the metadata. PyTorch: safetensors.torch.load_file(path).
function features.save(path, f, meta)
  local tensors = {features = f.features, labels = f.labels, logits = f.logits}
  local m = {layer = f.layer or "", paths = table.concat(f.paths or {}, "\n")}
  for k, v in pairs(meta or {}) do m[k] = tostring(v) end
  local dir = path:match("^(.*)/[^/]*$")
  if dir then os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") end
  av.save(path, tensors, m)
  return path
end

--- features.load(path) -> {features, labels, logits, paths, layer, meta}
function features.load(path)
  local t, meta = av.load(path)
  if not t.features or not t.labels then
    error(("features.load: '%s' holds no 'features' and 'labels' tensors (write it with features.save)"):format(path), 2)
  end
  local paths = {}
  if meta and meta.paths and meta.paths ~= "" then
    for p in (meta.paths .. "\n"):gmatch("(.-)\n") do paths[#paths + 1] = p end
  end
  return {features = t.features, labels = t.labels, logits = t.logits, paths = paths, layer = meta and meta.layer,
          meta = meta}
end

--- features.pca(X, opts) / features.tsne(X, opts) / features.trustworthiness(X, Y, opts): aviary.manifold's
function features.pca(...) return require("aviary.manifold").pca(...) end
function features.tsne(...) return require("aviary.manifold").tsne(...) end
function features.trustworthiness(...) return require("aviary.manifold").trustworthiness(...) end

return features
