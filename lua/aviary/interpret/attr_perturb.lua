--- aviary.interpret.attr_perturb: the perturbation methods of aviary.interpret (Occlusion,
-- ShapleyValueSampling), installed into aviary.interpret. They need forward passes only (run
-- without grad); perturbations_per_eval stacks several perturbed copies into one forward.
local av = require "aviary"
local C = require "aviary.interpret.attr_common"

local M = {}

local class = C.class

-- forward of several stacked copies (each N rows) -> list of N-element float64 score tensors
local function eval_copies(who, f, copies, targets)
  local n = #targets
  local batch = #copies == 1 and copies[1] or av.cat(copies, 1)
  local s = C.scores(who, f, batch, C.repeat_list(targets, #copies))
  local out = {}
  for j = 1, #copies do out[j] = s:narrow(1, (j - 1) * n + 1, n) end
  return out
end

-- the per-example dims as a list of integers (a number applies to every dim)
local function dims_list(who, name, v, nd, default)
  if v == nil then v = default end
  local out = {}
  if type(v) == "number" then
    for d = 1, nd do out[d] = v end
  elseif type(v) == "table" then
    if #v ~= nd then
      error(("%s: %s must give %d numbers (one per dim of an example), got %d"):format(who, name, nd, #v), 4)
    end
    for d = 1, nd do out[d] = v[d] end
  else
    error(("%s: %s must be a number or a list of %d numbers, got %s"):format(who, name, nd, type(v)), 4)
  end
  for d = 1, nd do
    if math.type(out[d]) ~= "integer" and not (type(out[d]) == "number" and out[d] == math.floor(out[d]))
      or out[d] < 1 then
      error(("%s: %s must hold positive integers, got %s"):format(who, name, tostring(out[d])), 4)
    end
    out[d] = math.tointeger(out[d])
  end
  return out
end

------------------------------------------------------------------------------

local Occlusion = class("Occlusion")
Occlusion.options = C.set({"sliding_window_shapes", "strides", "baselines", "target", "perturbations_per_eval"})

--- interpret.Occlusion(forward_func) -> object; :attribute(x, {sliding_window_shapes = {3, 15, 15} (required,
-- one per dim of an example), strides = 1 | {3, 8, 8}, baselines = 0 | tensor, target, perturbations_per_eval = 1})
-- -> x's size. The window slides over every dim of an example with the strides: ceil((size - window) / stride)
-- + 1 positions per dim, the last ones clipped at the border (Captum's count); each element's attribution is
-- the mean over the windows that cover it of f(x) - f(x with the window set to the baseline).
function M.Occlusion(f)
  return setmetatable({forward = C.forward_fn("Occlusion", f), raw = f}, Occlusion)
end

function Occlusion:attribute(x, opts)
  local who = self.name
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  local f = self.forward
  local shape = x:size()
  local nd = #shape - 1
  if opts.sliding_window_shapes == nil then
    error(who .. ": sliding_window_shapes is required (e.g. {3, 15, 15}: one size per dim of an example)", 2)
  end
  local win = dims_list(who, "sliding_window_shapes", opts.sliding_window_shapes, nd)
  local stride = dims_list(who, "strides", opts.strides, nd, 1)
  local ex = {table.unpack(shape, 2)}
  local counts, total = {}, 1
  for d = 1, nd do
    if win[d] > ex[d] then
      error(("%s: sliding_window_shapes %s is larger than an example of the input (%s)"):format(who,
        table.concat(win, "x"), table.concat(ex, "x")), 2)
    end
    if ex[d] ~= win[d] and stride[d] > win[d] then
      error(("%s: strides %s must not exceed sliding_window_shapes %s (dim %d)"):format(who, table.concat(stride, "x"),
        table.concat(win, "x"), d), 2)
    end
    counts[d] = math.ceil((ex[d] - win[d]) / stride[d]) + 1
    total = total * counts[d]
  end
  local ppe = C.positive_int(who, "perturbations_per_eval", opts.perturbations_per_eval, 1)
  local base = C.baselines(who, opts.baselines == nil and 0 or opts.baselines, x)
  local targets = C.targets(who, opts.target, f, x)
  local n = x:size(1)
  x = x:detach()
  local f0 = C.scores(who, f, x, targets)
  local attr = av.zeros(table.unpack(shape)):double()
  local weight = av.zeros(table.unpack(ex)):double()
  -- window j (0-based; the first dim varies fastest, as Captum) -> start and length per dim
  local function window(j)
    local st, len = {}, {}
    for d = 1, nd do
      local s = (j % counts[d]) * stride[d]
      j = j // counts[d]
      st[d], len[d] = s + 1, math.min(win[d], ex[d] - s)
    end
    return st, len
  end
  local function region(t, st, len, off)
    for d = 1, nd do t = t:narrow(d + off, st[d], len[d]) end
    return t
  end
  local j = 0
  while j < total do
    local k = math.min(ppe, total - j)
    local copies, wins = {}, {}
    for i = 1, k do
      local st, len = window(j + i - 1)
      local xa = x:clone()
      region(xa, st, len, 1):copy_(region(base, st, len, 1))
      copies[i], wins[i] = xa, {st, len}
    end
    local outs = eval_copies(who, f, copies, targets)
    for i = 1, k do
      local st, len = wins[i][1], wins[i][2]
      local view_shape = {n}
      for d = 1, nd do view_shape[d + 1] = 1 end
      region(attr, st, len, 1):add_((f0 - outs[i]):view(table.unpack(view_shape)))
      region(weight, st, len, 0):add_(1)
    end
    j = j + k
  end
  return (attr / weight):to(x:dtype())
end

------------------------------------------------------------------------------

local ShapleyValueSampling = class("ShapleyValueSampling")
ShapleyValueSampling.options = C.set({"baselines", "target", "feature_mask", "n_samples", "perturbations_per_eval",
                                      "seed"})

--- interpret.ShapleyValueSampling(forward_func) -> object; :attribute(x, {baselines = 0, target,
-- feature_mask = nil (each scalar its own feature) | integer tensor broadcastable to an example (C x H x W or
-- 1 x C x H x W; 1-based feature ids, shared by the batch), n_samples = 25, perturbations_per_eval = 1,
-- seed = nil}) -> x's size. For each of n_samples random orders of the features, the features are switched
-- from the baseline to the input one at a time; each feature's marginal change of the target score, averaged
-- over the orders, is the attribution of every element of that feature (Castro et al.; Captum's sampling).
function M.ShapleyValueSampling(f)
  return setmetatable({forward = C.forward_fn("ShapleyValueSampling", f), raw = f}, ShapleyValueSampling)
end

function ShapleyValueSampling:attribute(x, opts)
  local who = self.name
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  local f = self.forward
  local shape = x:size()
  local ex = {table.unpack(shape, 2)}
  local nd = #ex
  local fm = opts.feature_mask
  if fm == nil then
    local numel = 1
    for d = 1, nd do numel = numel * ex[d] end
    fm = av.arange(1, numel + 1):view(table.unpack(ex))
  else
    if not av.is_tensor(fm) or fm:dtype():find("float") then
      error(who .. ": feature_mask must be an integer tensor of 1-based feature ids", 2)
    end
    if fm:dim() == nd + 1 then
      if fm:size(1) ~= 1 then
        error(("%s: feature_mask of size %s: its first dim must be 1 (one mask shared by the batch)"):format(who,
          C.shape(fm)), 2)
      end
      fm = fm:select(1, 1)
    end
    local ok = fm:dim() == nd
    for d = 1, nd do ok = ok and (fm:size(d) == ex[d] or fm:size(d) == 1) end
    if not ok then
      error(("%s: feature_mask of size %s does not broadcast to an example of the input (%s)"):format(who,
        C.shape(opts.feature_mask), table.concat(ex, "x")), 2)
    end
    fm = fm:long():expand(table.unpack(ex)):contiguous()
  end
  local ids = {}
  do
    local seen = {}
    local flat = fm:reshape(-1)
    local list = flat:tolist()
    for _, v in ipairs(list) do
      if not seen[v] then seen[v] = true; ids[#ids + 1] = v end
    end
    table.sort(ids)
  end
  local ns = C.positive_int(who, "n_samples", opts.n_samples, 25)
  local ppe = C.positive_int(who, "perturbations_per_eval", opts.perturbations_per_eval, 1)
  local base = C.baselines(who, opts.baselines == nil and 0 or opts.baselines, x)
  local targets = C.targets(who, opts.target, f, x)
  local n = x:size(1)
  x = x:detach()
  -- a feature's mask (1 x example), made when used: one per feature would not fit for per-scalar features
  local function mask(i) return fm:eq(ids[i]):to(x:dtype()):unsqueeze(1) end
  local f_base = C.scores(who, f, base, targets)
  local attr = av.zeros(table.unpack(shape)):double()
  local view_shape = {n}
  for d = 1, nd do view_shape[d + 1] = 1 end
  local nf = #ids
  C.with_seed(opts.seed, function()
    for _ = 1, ns do
      local perm = av.randperm(nf)
      local current, prev = base:clone(), f_base
      local p = 1
      while p <= nf do
        local k = math.min(ppe, nf - p + 1)
        local copies, used = {}, {}
        for i = 1, k do
          local m = mask(perm[p + i - 1] + 1)
          current = current + (x - current) * m
          copies[i], used[i] = current, m
        end
        local outs = eval_copies(who, f, copies, targets)
        for i = 1, k do
          attr:add_((outs[i] - prev):view(table.unpack(view_shape)) * used[i]:double())
          prev = outs[i]
        end
        p = p + k
      end
    end
  end)
  return (attr / ns):to(x:dtype())
end

--- install(interpret) -- puts the perturbation methods into aviary.interpret
function M.install(interpret)
  interpret.Occlusion = M.Occlusion
  interpret.ShapleyValueSampling = M.ShapleyValueSampling
end

return M
