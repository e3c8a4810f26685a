--- aviary.interpret.optvis: feature visualisation by optimisation, with Lucent's semantics
-- (lucent.optvis: param, transform, objectives, render_vis).
--
--   local optvis = require "aviary.interpret.optvis"
--   local obj = optvis.objectives
--   local imgs, info = optvis.render(model, obj.channel("layer4", 7), {steps = 256})      -- uint8 1 x 3 x 128 x 128
--   local imgs2 = optvis.render(model, obj.channel("layer4", 7) - 1e2 * obj.diversity("layer4"),
--                               {param = optvis.param.image(128, {batch = 4})})
--
-- The image is parameterised as Lucent's: a scaled Fourier spectrum (inverse real 2-D DFT written as
-- matrix products, so autograd goes through av.matmul), colour-decorrelated and squashed by a sigmoid.
-- Each step draws Lucent's standard transforms (pad, jitter, scale, rotate, jitter), normalises with the
-- ImageNet mean and std, runs the model (evaluation mode, parameters untouched) and takes an Adam step
-- on the image parameters to minimise the objective.
local av = require "aviary"
local F = require "aviary.nn.functional"

local optvis = {}

local check_opts = require("aviary.util").check_opts

-- ---- random numbers for the transforms (seeded, independent of av's generator) ---------------

--- optvis.rng(seed) -> rng with rng:int(n) in 1..n and rng:choice(list)
function optvis.rng(seed)
  local state = (math.tointeger(seed) or 1) * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D
  local r = {}
  function r.next()
    -- splitmix64
    state = state + 0x9E3779B97F4A7C15
    local z = state
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    return z ~ (z >> 31)
  end
  function r:int(n) return ((r.next() >> 11) % n) + 1 end
  function r:choice(list) return list[self:int(#list)] end
  return r
end

-- ---- parameterisations (lucent.optvis.param) -----------------------------------------------

local param = {}
optvis.param = param

--- Lucent's color_correlation_svd_sqrt, and the matrix normalised by its largest column norm
param.color_correlation_svd_sqrt = {{0.26, 0.09, 0.02}, {0.27, 0.00, -0.05}, {0.27, -0.09, 0.03}}
do
  local m = param.color_correlation_svd_sqrt
  local maxn = 0
  for j = 1, 3 do
    local s = 0
    for i = 1, 3 do s = s + m[i][j] ^ 2 end
    maxn = math.max(maxn, math.sqrt(s))
  end
  param.max_norm_svd_sqrt = maxn
  local n = {}
  for i = 1, 3 do n[i] = {} for j = 1, 3 do n[i][j] = m[i][j] / maxn end end
  param.color_correlation_normalized = n
end

--- param.rfft2d_freqs(h, w) -> h x wf float64 tensor: Lucent's frequencies (wf = w//2 + 1, or w//2 + 2
-- for odd w, as Lucent's rfft2d_freqs)
function param.rfft2d_freqs(h, w)
  local function fftfreq(n, i) -- numpy.fft.fftfreq(n)[i], i 0-based
    local k = (i < (n + 1) // 2) and i or i - n
    return k / n
  end
  local wf = (w % 2 == 1) and (w // 2 + 2) or (w // 2 + 1)
  local rows = {}
  for i = 0, h - 1 do
    local fy = fftfreq(h, i)
    local row = {}
    for j = 0, wf - 1 do
      local fx = fftfreq(w, j)
      row[j + 1] = math.sqrt(fx * fx + fy * fy)
    end
    rows[i + 1] = row
  end
  return av.tensor(rows, {dtype = "float64"})
end

-- the inverse real 2-D DFT (norm 'ortho') as matrices: x = (Ch A - Sh B) Cw - (Sh A + Ch B) Sw, where
-- A, B are the real and imaginary parts of the used half spectrum (h x wu, wu = w//2 + 1)
local function idft_matrices(h, w)
  local wu = w // 2 + 1
  local ch, sh = {}, {}
  local sH = 1 / math.sqrt(h)
  for m = 0, h - 1 do
    local cr, sr = {}, {}
    for k = 0, h - 1 do
      local ang = 2 * math.pi * ((k * m) % h) / h
      cr[k + 1], sr[k + 1] = math.cos(ang) * sH, math.sin(ang) * sH
    end
    ch[m + 1], sh[m + 1] = cr, sr
  end
  local cw, sw = {}, {}
  local sW = 1 / math.sqrt(w)
  for l = 0, wu - 1 do
    -- c2r: the DC column (and the Nyquist column for even w) count once, the others twice (their
    -- conjugates); the imaginary parts of DC and Nyquist meet sin(0) = sin(pi n) = 0, so they are ignored
    local wt = (l == 0 or (w % 2 == 0 and l == w // 2)) and 1 or 2
    local cr, sr = {}, {}
    for n = 0, w - 1 do
      local ang = 2 * math.pi * ((l * n) % w) / w
      cr[n + 1], sr[n + 1] = wt * math.cos(ang) * sW, wt * math.sin(ang) * sW
    end
    cw[l + 1], sw[l + 1] = cr, sr
  end
  local T = function(t) return av.tensor(t, {dtype = "float64"}):float() end
  return T(ch), T(sh), T(cw), T(sw), wu
end

--- param.irfft2(spec, h, w) -> N x C x h x w: torch.fft.irfftn(view_as_complex(spec), s = (h, w), norm = 'ortho')
-- for spec N x C x h x wf x 2 (real, imaginary; columns beyond w//2 + 1 are ignored), differentiable
function param.irfft2(spec, h, w)
  local Ch, Sh, Cw, Sw, wu = idft_matrices(h, w)
  local s = spec:narrow(4, 1, wu)
  local A, B = s:select(5, 1), s:select(5, 2)
  local Yre = av.matmul(Ch, A) - av.matmul(Sh, B)
  local Yim = av.matmul(Sh, A) + av.matmul(Ch, B)
  return av.matmul(Yre, Cw) - av.matmul(Yim, Sw)
end

--- param.fft_image({batch, channels, h, w}, sd = 0.01, decay_power = 1) -> params, image_f
-- Lucent's fft_image: a spectrum ~ N(0, sd) scaled by 1 / max(freq, 1 / max(w, h))^decay_power, inverse
-- real FFT (ortho), divided by 4
function param.fft_image(shape, sd, decay_power)
  local batch, ch, h, w = shape[1], shape[2], shape[3], shape[4]
  decay_power = decay_power or 1
  local freqs = param.rfft2d_freqs(h, w)
  local wf = freqs:size(2)
  local spec = (av.randn(batch, ch, h, wf, 2) * (sd or 0.01)):requires_grad_()
  local scale = (1 / freqs:clamp(1 / math.max(w, h), nil) ^ decay_power):float():view(1, 1, h, wf, 1)
  local Ch, Sh, Cw, Sw, wu = idft_matrices(h, w)
  local function image_f()
    local s = (spec * scale):narrow(4, 1, wu)
    local A, B = s:select(5, 1), s:select(5, 2)
    local Yre = av.matmul(Ch, A) - av.matmul(Sh, B)
    local Yim = av.matmul(Sh, A) + av.matmul(Ch, B)
    return (av.matmul(Yre, Cw) - av.matmul(Yim, Sw)) / 4.0
  end
  return {spec}, image_f, scale
end

--- param.pixel_image({batch, channels, h, w}, sd = 0.01) -> params, image_f
function param.pixel_image(shape, sd)
  local t = (av.randn(shape[1], shape[2], shape[3], shape[4]) * (sd or 0.01)):requires_grad_()
  return {t}, function() return t end
end

--- param.decorrelate(t) -> t (N x 3 x H x W) with each pixel's colour multiplied by the normalised
-- correlation matrix (Lucent's _linear_decorrelate_color)
function param.decorrelate(t)
  local M = av.tensor(param.color_correlation_normalized):t():contiguous()
  return av.matmul(t:permute(1, 3, 4, 2), M):permute(1, 4, 2, 3)
end

--- param.to_valid_rgb(image_f, decorrelate) -> function() -> sigmoid(decorrelate(image_f()))
function param.to_valid_rgb(image_f, decorrelate)
  return function()
    local x = image_f()
    if decorrelate then x = param.decorrelate(x) end
    return x:sigmoid()
  end
end

--- param.image(size | {h, w}, {batch = 1, fft = true, decorrelate = true, sd = 0.01, channels = 3,
--   decay_power = 1}) -> {params = {...}, image = function() -> N x C x H x W in [0, 1], size = {h, w}, batch}
function param.image(size, opts)
  local who = "optvis.param.image"
  opts = check_opts(who, opts, {"batch", "fft", "decorrelate", "sd", "channels", "decay_power"})
  local h, w
  if type(size) == "number" then h, w = size, size
  elseif type(size) == "table" then h, w = size[1], size[2] end
  for _, v in ipairs({h or false, w or false}) do
    if type(v) ~= "number" or v ~= math.floor(v) or v < 2 then
      error(who .. ": size must be an integer >= 2 or {h, w}, got " .. tostring(size), 2)
    end
  end
  local batch, ch = opts.batch or 1, opts.channels or 3
  if type(batch) ~= "number" or batch < 1 or batch ~= math.floor(batch) then error(who .. ": batch must be a positive integer", 2) end
  if type(ch) ~= "number" or ch < 1 or ch ~= math.floor(ch) then error(who .. ": channels must be a positive integer", 2) end
  local params, image_f
  if opts.fft == false then params, image_f = param.pixel_image({batch, ch, h, w}, opts.sd)
  else params, image_f = param.fft_image({batch, ch, h, w}, opts.sd, opts.decay_power) end
  local decor = opts.decorrelate ~= false and ch == 3
  return {params = params, image = param.to_valid_rgb(image_f, decor), size = {h, w}, batch = batch, channels = ch}
end

-- ---- transforms (lucent.optvis.transform) --------------------------------------------------

local transforms = {}
optvis.transforms = transforms

--- transforms.pad(w, {mode = 'constant', value = 0.5})
function transforms.pad(wd, opts)
  opts = opts or {}
  local mode, value = opts.mode or "constant", opts.value or 0.5
  return function(img)
    if mode == "constant" then return F.pad(img, {wd, wd, wd, wd}, {mode = "constant", value = value}) end
    return F.pad(img, {wd, wd, wd, wd}, {mode = mode})
  end
end

--- transforms.translate(img, dx, dy): content moved dx right and dy down, zeros coming in (kornia.translate)
function transforms.translate(img, dx, dy)
  if dx == 0 and dy == 0 then return img end
  local H, W = img:size(3), img:size(4)
  local p = F.pad(img, {math.max(dx, 0), math.max(-dx, 0), math.max(dy, 0), math.max(-dy, 0)})
  return p:narrow(3, dy >= 0 and 1 or 1 - dy, H):narrow(4, dx >= 0 and 1 or 1 - dx, W)
end

--- transforms.jitter(d): a random translation by 0..d-1 pixels in x and y
function transforms.jitter(d)
  if type(d) ~= "number" or d <= 1 then error("optvis.transforms.jitter: d must be more than 1, got " .. tostring(d), 2) end
  return function(img, rng)
    local dx, dy = rng:int(d) - 1, rng:int(d) - 1
    return transforms.translate(img, dx, dy)
  end
end

--- transforms.random_scale(scales): bilinear resize (align_corners) by a random factor, padded back with
-- zeros when smaller (Lucent's random_scale)
function transforms.random_scale(scales)
  return function(img, rng)
    local s = rng:choice(scales)
    local H, W = img:size(3), img:size(4)
    local sh, sw = math.ceil(s * H - 1e-9), math.ceil(s * W - 1e-9)
    local pad_x = math.max(0, math.ceil((W - sw) / 2))
    local pad_y = math.max(0, math.ceil((H - sh) / 2))
    local up = (sh == H and sw == W) and img or F.interpolate(img, {size = {sh, sw}, mode = "bilinear", align_corners = true})
    if pad_x == 0 and pad_y == 0 then return up end
    return F.pad(up, {pad_y, pad_x, pad_y, pad_x})
  end
end

-- bilinear sampling tables for a rotation by `deg` degrees about the centre (kornia.rotate: zeros outside,
-- align_corners): four (index, weight) pairs per output pixel, over the flattened H*W image
local rot_cache, rot_cached = {}, 0
local function rotation_tables(H, W, deg)
  local key = H .. "x" .. W .. "@" .. deg
  local c = rot_cache[key]
  if c then return c end
  if rot_cached >= 64 then rot_cache, rot_cached = {}, 0 end   -- bounded: sizes and angles vary per step
  local th = math.rad(deg)
  local ca, sa = math.cos(th), math.sin(th)
  local cx, cy = (W - 1) / 2, (H - 1) / 2
  local dx = (av.arange(W, {dtype = "float64"}) - cx):view(1, W):expand(H, W)
  local dy = (av.arange(H, {dtype = "float64"}) - cy):view(H, 1):expand(H, W)
  -- kornia.rotate samples the source at R^T (p - c) + c
  local sx = (dx * ca - dy * sa + cx):reshape(-1)
  local sy = (dx * sa + dy * ca + cy):reshape(-1)
  local x0, y0 = sx:floor(), sy:floor()
  local fx, fy = sx - x0, sy - y0
  local corners = {{x0, y0, (1 - fx) * (1 - fy)}, {x0 + 1, y0, fx * (1 - fy)}, {x0, y0 + 1, (1 - fx) * fy},
    {x0 + 1, y0 + 1, fx * fy}}
  c = {}
  for k = 1, 4 do
    local qx, qy, wt = corners[k][1], corners[k][2], corners[k][3]
    local inside = qx:ge(0):logical_and(qx:lt(W)):logical_and(qy:ge(0)):logical_and(qy:lt(H))
    local idx = av.where(inside, qy * W + qx + 1, av.ones_like(qx)):long()
    c[k] = {idx, (wt * inside:double()):float()}
  end
  rot_cache[key] = c
  rot_cached = rot_cached + 1
  return c
end

--- transforms.rotate(img, deg): rotation about the centre by bilinear sampling (differentiable)
function transforms.rotate(img, deg)
  if deg == 0 then return img end
  local N, C, H, W = img:size(1), img:size(2), img:size(3), img:size(4)
  local tabs = rotation_tables(H, W, deg)
  local flat = img:reshape(N, C, H * W)
  local out
  for k = 1, 4 do
    local term = flat:index_select(3, tabs[k][1]) * tabs[k][2]
    out = out and out + term or term
  end
  return out:view(N, C, H, W)
end

--- transforms.random_rotate(angles): rotation by a random angle (degrees) from the list
function transforms.random_rotate(angles)
  return function(img, rng) return transforms.rotate(img, rng:choice(angles)) end
end

local MEAN, STD = {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}
--- transforms.normalize(): (img - ImageNet mean) / std, as Lucent's normalize for torchvision models
function transforms.normalize()
  local m, s = av.tensor(MEAN):view(1, 3, 1, 1), av.tensor(STD):view(1, 3, 1, 1)
  return function(img) return (img - m) / s end
end

--- transforms.compose(list) -> function(img, rng)
function transforms.compose(list)
  return function(img, rng)
    for _, t in ipairs(list) do img = t(img, rng) end
    return img
  end
end

do
  local scales, angles = {}, {}
  for i = 0, 10 do scales[#scales + 1] = 1 + (i - 5) / 50 end
  for a = -10, 10 do angles[#angles + 1] = a end
  for _ = 1, 5 do angles[#angles + 1] = 0 end
  transforms.scales, transforms.angles = scales, angles
  --- transforms.standard: Lucent's standard_transforms
  transforms.standard = {transforms.pad(12, {mode = "constant", value = 0.5}), transforms.jitter(8),
    transforms.random_scale(scales), transforms.random_rotate(angles), transforms.jitter(4)}
end

-- ---- objectives (lucent.optvis.objectives) -------------------------------------------------

local Objective = {}
Objective.__index = Objective

local function is_objective(x) return getmetatable(x) == Objective end

local function objective(name, layers, fn, output)
  return setmetatable({name = name, layers = layers, fn = fn, output = output or false}, Objective)
end

local function union(a, b)
  local out, seen = {}, {}
  for _, l in ipairs(a) do if not seen[l] then seen[l] = true; out[#out + 1] = l end end
  for _, l in ipairs(b) do if not seen[l] then seen[l] = true; out[#out + 1] = l end end
  return out
end

local function check_operand(op, x)
  if not (is_objective(x) or type(x) == "number") then
    error(("optvis objective %s: operands must be objectives or numbers, got %s"):format(op, type(x)), 3)
  end
end

Objective.__add = function(a, b)
  check_operand("+", a); check_operand("+", b)
  if type(a) == "number" then a, b = b, a end
  if type(b) == "number" then
    return objective(a.name .. " + " .. b, a.layers, function(h) return a.fn(h) + b end, a.output)
  end
  return objective(a.name .. " + " .. b.name, union(a.layers, b.layers), function(h) return a.fn(h) + b.fn(h) end,
    a.output or b.output)
end
Objective.__sub = function(a, b)
  check_operand("-", a); check_operand("-", b)
  if type(b) == "number" then return objective(a.name .. " - " .. b, a.layers, function(h) return a.fn(h) - b end, a.output) end
  if type(a) == "number" then return objective(a .. " - " .. b.name, b.layers, function(h) return a - b.fn(h) end, b.output) end
  return objective(a.name .. " - " .. b.name, union(a.layers, b.layers), function(h) return a.fn(h) - b.fn(h) end,
    a.output or b.output)
end
Objective.__mul = function(a, b)
  check_operand("*", a); check_operand("*", b)
  if type(a) == "number" then a, b = b, a end
  if type(b) == "number" then return objective(b .. " * " .. a.name, a.layers, function(h) return a.fn(h) * b end, a.output) end
  return objective(a.name .. " * " .. b.name, union(a.layers, b.layers), function(h) return a.fn(h) * b.fn(h) end,
    a.output or b.output)
end
Objective.__div = function(a, b)
  if not is_objective(a) or type(b) ~= "number" then error("optvis objective /: only objective / number is defined", 2) end
  return objective(a.name .. " / " .. b, a.layers, function(h) return a.fn(h) / b end, a.output)
end
Objective.__unm = function(a) return objective("-" .. a.name, a.layers, function(h) return -a.fn(h) end, a.output) end
Objective.__tostring = function(a) return "Objective(" .. a.name .. ")" end

local objectives = {}
optvis.objectives = objectives
objectives.Objective = Objective
objectives.is_objective = is_objective

local function check_layer(who, layer)
  if type(layer) ~= "string" or layer == "" then error(who .. ": layer must be a module name such as 'layer3' or 'layer4.1.conv2'", 3) end
end
local function check_index(who, what, n)
  if type(n) ~= "number" or n ~= math.floor(n) or n < 1 then
    error(("%s: %s must be a positive integer (1-based), got %s"):format(who, what, tostring(n)), 3)
  end
end

local function shape_str(t)
  local s = {}
  for i = 1, t:dim() do s[i] = t:size(i) end
  return table.concat(s, "x")
end

-- the channel n of a captured N x C x ... activation, with a clear error when out of range
local function channel_of(who, layer, t, n)
  if t:dim() < 2 then error(("%s: layer '%s' gave a %s tensor, not N x C x ..."):format(who, layer, shape_str(t)), 0) end
  local C = t:size(2)
  if n > C then
    error(("%s: channel %d is out of range: layer '%s' has %d channels (1..%d)"):format(who, n, layer, C, C), 0)
  end
  return t:select(2, n)
end

--- objectives.channel(layer, n) -- -mean of channel n (1-based) of the layer's output
function objectives.channel(layer, n)
  local who = "optvis.objectives.channel"
  check_layer(who, layer); check_index(who, "n", n)
  return objective(("%s:%d"):format(layer, n), {layer}, function(h)
    return -channel_of(who, layer, h[layer], n):mean()
  end)
end

--- objectives.neuron(layer, n, x, y) -- -value at column x, row y (1-based; default the centre) of channel n
function objectives.neuron(layer, n, x, y)
  local who = "optvis.objectives.neuron"
  check_layer(who, layer); check_index(who, "n", n)
  if x ~= nil then check_index(who, "x", x) end
  if y ~= nil then check_index(who, "y", y) end
  return objective(("%s:%d@%s,%s"):format(layer, n, tostring(x or "c"), tostring(y or "c")), {layer}, function(h)
    local c = channel_of(who, layer, h[layer], n)
    if c:dim() ~= 3 then error(("%s: layer '%s' has no spatial dims (%s)"):format(who, layer, shape_str(h[layer])), 0) end
    local H, W = c:size(2), c:size(3)
    local xx, yy = x or (W // 2 + 1), y or (H // 2 + 1)
    if xx > W or yy > H then
      error(("%s: position (x = %d, y = %d) is outside layer '%s''s %dx%d map"):format(who, xx, yy, layer, H, W), 0)
    end
    return -c:select(3, xx):select(2, yy):mean()
  end)
end

--- objectives.deepdream(layer) -- -mean of the squared activations
function objectives.deepdream(layer)
  local who = "optvis.objectives.deepdream"
  check_layer(who, layer)
  return objective("deepdream:" .. layer, {layer}, function(h) return -(h[layer] ^ 2):mean() end)
end

--- objectives.class_logit(n) -- -mean of the model output's column n (1-based)
function objectives.class_logit(n)
  local who = "optvis.objectives.class_logit"
  check_index(who, "n", n)
  return objective("logit:" .. n, {}, function(h)
    local out = h.__output
    if out:dim() ~= 2 then error(("%s: the model's output is %s, not N x classes"):format(who, shape_str(out)), 0) end
    if n > out:size(2) then
      error(("%s: class %d is out of range: the model has %d outputs (1..%d)"):format(who, n, out:size(2), out:size(2)), 0)
    end
    return -out:select(2, n):mean()
  end, true)
end

-- sum of the diagonal of a square matrix, differentiably
local function diag_sum(m)
  return (m * av.eye(m:size(1), {dtype = m:dtype()})):sum()
end

--- objectives.diversity(layer) -- Lucent's diversity: minus the summed pairwise cosine similarity of the
-- batch's Gram matrices, divided by the batch size (add it with a negative weight: a - 1e2 * diversity)
function objectives.diversity(layer)
  local who = "optvis.objectives.diversity"
  check_layer(who, layer)
  return objective("diversity:" .. layer, {layer}, function(h)
    local t = h[layer]
    if t:dim() < 2 then error(("%s: layer '%s' gave a %s tensor"):format(who, layer, shape_str(t)), 0) end
    local B, C = t:size(1), t:size(2)
    local flat = t:reshape(B, C, -1)
    local grams = av.matmul(flat, flat:transpose(2, 3)):reshape(B, C * C)
    local g = grams / grams:norm(2, 2, true):clamp(1e-12, nil)        -- F.normalize over each Gram matrix
    local sim = av.matmul(g, g:t())                                   -- B x B cosine similarities
    return -(sim:sum() - diag_sum(sim)) / B
  end)
end

--- objectives.as_objective(x) -> x (an objective) or an error
function objectives.as_objective(x)
  if is_objective(x) then return x end
  error("optvis: the objective must be built from optvis.objectives (channel, neuron, deepdream, class_logit, "
    .. "diversity), got " .. type(x), 3)
end

-- ---- rendering ---------------------------------------------------------------------------------

local RENDER_OPTS = {"param", "steps", "lr", "transforms", "preprocess", "seed", "progress", "size", "on_step"}


local STOP = setmetatable({}, {__tostring = function() return "optvis: forward stopped early" end})

--- optvis.render(model, objective, {param = optvis.param.image(128), steps = 256, lr = 0.05,
--   transforms = optvis.transforms.standard, preprocess = true, seed = 1, progress = true, size = nil})
-- -> uint8 N x 3 x H x W, {loss = {per step}, seconds = }
-- Adam on the image parameters minimising the objective. The model runs in evaluation mode with its
-- parameters' requires_grad switched off (restored afterwards, with the mode and the hooks, even on error).
function optvis.render(model, obj, opts)
  local who = "optvis.render"
  opts = check_opts(who, opts, RENDER_OPTS)
  if type(model) ~= "table" or type(model.named_modules) ~= "function" then error(who .. ": expected a model (an nn.Module)", 2) end
  if not is_objective(obj) then
    error(who .. ": the objective must be built from optvis.objectives (channel, neuron, deepdream, class_logit, diversity), got "
      .. type(obj), 2)
  end
  local steps = opts.steps or 256
  if type(steps) ~= "number" or steps < 0 or steps ~= math.floor(steps) then error(who .. ": steps must be a non-negative integer", 2) end
  local lr = opts.lr or 0.05
  if type(lr) ~= "number" or lr <= 0 then error(who .. ": lr must be a positive number", 2) end
  local seed = opts.seed or 1
  if type(seed) ~= "number" then error(who .. ": seed must be a number", 2) end
  local tlist = opts.transforms or transforms.standard
  if type(tlist) ~= "table" then error(who .. ": transforms must be a list of functions (optvis.transforms.standard or {})", 2) end
  for i, t in ipairs(tlist) do
    if type(t) ~= "function" then error(("%s: transforms[%d] is a %s, not a function(img, rng)"):format(who, i, type(t)), 2) end
  end
  if opts.size ~= nil and not (type(opts.size) == "number" or type(opts.size) == "table") then
    error(who .. ": size must be a number or {h, w}", 2)
  end
  -- layers first, so a misspelt name fails before any work (features.layer lists the names)
  local features = require "aviary.features"
  local mods = {}
  for _, l in ipairs(obj.layers) do
    local ok, m = pcall(features.layer, model, l)
    if not ok then error(who .. ": " .. tostring(m):gsub("^features: ", ""), 2) end
    mods[l] = m
  end
  local p = opts.param
  if p == nil then
    local state = av.get_rng_state()
    av.manual_seed(seed)
    p = param.image(128)
    av.set_rng_state(state)
  end
  if type(p) ~= "table" or type(p.params) ~= "table" or type(p.image) ~= "function" then
    error(who .. ": param must be a table {params = {...}, image = function} such as optvis.param.image(128)", 2)
  end
  local chain = {}
  for _, t in ipairs(tlist) do chain[#chain + 1] = t end
  if opts.preprocess ~= false then chain[#chain + 1] = transforms.normalize() end
  if opts.size then
    local s = type(opts.size) == "number" and {opts.size, opts.size} or opts.size
    chain[#chain + 1] = function(img) return F.interpolate(img, {size = s, mode = "bilinear", align_corners = true}) end
  end
  local transform_f = transforms.compose(chain)
  local rng = optvis.rng(seed)
  local want_output = obj.output

  -- model state: evaluation mode, parameters frozen; all restored in `restore`
  local was_training = model.training
  local frozen = {}
  for _, q in ipairs(model:parameters()) do
    if q.requires_grad then frozen[#frozen + 1] = q; q:requires_grad_(false) end
  end
  model:evaluate()
  local captured, handles = {}, {}
  local n_layers = #obj.layers
  for l, m in pairs(mods) do
    handles[#handles + 1] = m:register_forward_hook(function(_, _, out)
      captured[l] = out
      if not want_output then
        local k = 0
        for _ in pairs(captured) do k = k + 1 end
        if k == n_layers then error(STOP, 0) end       -- the rest of the network is not needed
      end
    end)
  end
  local function restore()
    for _, hd in ipairs(handles) do hd.remove() end
    for _, q in ipairs(frozen) do q:requires_grad_(true) end
    if was_training then model:train() end
  end

  local losses = {}
  local t0 = av.clock()
  local bar = opts.progress ~= false and steps > 0 and require("aviary.progress").bar(steps, {label = "optvis", unit = "step"}) or nil
  local ok, err = pcall(function()
    local optim = require("aviary.optim").Adam(p.params, {lr = lr})
    for step = 1, steps do
      for k in pairs(captured) do captured[k] = nil end
      local x = transform_f(p.image(), rng)
      local fok, out = pcall(model, x)
      if not fok and out ~= STOP then error(out, 0) end
      if want_output then captured.__output = out end
      for _, l in ipairs(obj.layers) do
        if captured[l] == nil then error(("%s: layer '%s' did not run in the forward pass"):format(who, l), 0) end
      end
      local loss = obj.fn(captured)
      if not av.is_tensor(loss) or loss:numel() ~= 1 then error(who .. ": the objective must give a one-element tensor", 0) end
      local grads = av.grad({loss}, p.params, {allow_unused = true})
      for i, q in ipairs(p.params) do q.grad = grads[i] or nil end
      optim:step()
      for _, q in ipairs(p.params) do q.grad = nil end
      losses[step] = loss:item()
      if opts.on_step then opts.on_step(step, losses[step]) end
      if bar then bar:update(1) end
    end
  end)
  restore()
  for k in pairs(captured) do captured[k] = nil end
  if bar then bar:finish() end
  if not ok then error(err, 0) end
  local img = av.no_grad(function() return p.image() end)
  return (img * 255):round():clamp(0, 255):byte(), {loss = losses, seconds = av.clock() - t0}
end

--- optvis.channel_grid(model, layer, channels, {steps, size = 96, cell = 128, cols, title, seed, lr, progress,
--   transforms, preprocess}) -> an aviary.plot figure (plot.image_grid) of each channel's visualisation titled
-- "layer:n", and the list of uint8 3 x H x W images
function optvis.channel_grid(model, layer, channels, opts)
  local who = "optvis.channel_grid"
  opts = check_opts(who, opts, {"steps", "size", "cell", "cols", "title", "seed", "lr", "progress", "transforms", "preprocess", "fft", "decorrelate"})
  if type(channels) ~= "table" or #channels == 0 then error(who .. ": channels must be a non-empty list of 1-based channel numbers", 2) end
  local imgs, caps = {}, {}
  for i, c in ipairs(channels) do
    local state = av.get_rng_state()
    av.manual_seed((opts.seed or 1) + i - 1)
    local pf = param.image(opts.size or 96, {fft = opts.fft, decorrelate = opts.decorrelate})
    av.set_rng_state(state)
    local ok, out = pcall(optvis.render, model, objectives.channel(layer, c), {param = pf, steps = opts.steps or 128,
      lr = opts.lr, seed = (opts.seed or 1) + i - 1, progress = opts.progress, transforms = opts.transforms,
      preprocess = opts.preprocess})
    if not ok then error(who .. ": " .. tostring(out):gsub("^optvis%.render: ", ""), 2) end
    imgs[i] = out[1]
    caps[i] = ("%s:%d"):format(layer, c)
  end
  return require("aviary.plot").image_grid{images = imgs, captions = caps, cols = opts.cols, cell = opts.cell or 128,
    title = opts.title}, imgs
end

--- optvis.mean_activation(model, layer, channel, images) -> number: the channel's mean activation on a
-- batch of (already normalised) N x 3 x H x W images, in evaluation mode without gradients
function optvis.mean_activation(model, layer, channel, images)
  local who = "optvis.mean_activation"
  local features = require "aviary.features"
  local ok, m = pcall(features.layer, model, layer)
  if not ok then error(who .. ": " .. tostring(m):gsub("^features: ", ""), 2) end
  check_index(who, "channel", channel)
  if not av.is_tensor(images) or images:dim() ~= 4 then error(who .. ": images must be an N x 3 x H x W tensor", 2) end
  local captured
  local h = m:register_forward_hook(function(_, _, out) captured = out; error(STOP, 0) end)
  local was_training = model.training
  model:evaluate()
  local ok2, err = pcall(function()
    local _ <close> = av.no_grad()
    local fok, e = pcall(model, images:float())
    if not fok and e ~= STOP then error(e, 0) end
  end)
  h.remove()
  if was_training then model:train() end
  if not ok2 then error(err, 0) end
  local c = channel_of(who, layer, captured, channel)
  return c:double():mean():item()
end

return optvis
