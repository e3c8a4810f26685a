--- aviary.interpret.visualize: attribution maps drawn as Captum's captum.attr.visualization draws them,
-- and a layer's activations as tiled heat maps.
--
--   local viz = require "aviary.interpret.visualize"
--   local m = viz.normalize_attr(attr, "all")                         -- H x W in [-1, 1]
--   local panel = viz.visualize_image_attr(attr, img, {method = "blended_heat_map", sign = "positive"})
--   viz.figure(img, {{attr = sal, method = "heat_map", sign = "absolute_value", title = "saliency"}}):save("a.png")
--   viz.feature_maps(act, {max = 16}):save("maps.png")
--
-- Images are C x H x W (uint8 0..255 or float in [0, 1]); attributions are C x H x W, 1 x C x H x W or
-- H x W. Panels come back as uint8 3 x H x W tensors, figures as aviary.plot figures (fig:save(path)).
local av = require "aviary"
local plot = require "aviary.plot"

local viz = {}

local SIGNS = {"all", "positive", "negative", "absolute_value"}
local METHODS = {"heat_map", "blended_heat_map", "original_image", "masked_image", "alpha_scaling"}

local function member(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

local function shape_str(t)
  local s = {}
  for i = 1, t:dim() do s[i] = t:size(i) end
  return table.concat(s, "x")
end

local check_opts = require("aviary.util").check_opts

local function check_sign(who, sign)
  if not member(SIGNS, sign) then
    error(("%s: unknown sign '%s' (valid: %s)"):format(who, tostring(sign), table.concat(SIGNS, ", ")), 3)
  end
end

local function check_method(who, method)
  if not member(METHODS, method) then
    error(("%s: unknown method '%s' (valid: %s)"):format(who, tostring(method), table.concat(METHODS, ", ")), 3)
  end
end

-- Captum's _cumulative_sum_threshold: the first sorted value at which the cumulative sum reaches
-- percentile % of the total (the maximum for 100)
local function cumulative_sum_threshold(values, percentile)
  local v = values:reshape(-1)
  if percentile >= 100 then return v:max():item() end
  local sorted = v:sort()
  local cs = sorted:cumsum(1)
  local target = cs[cs:size(1)] * 0.01 * percentile
  local idx = cs:ge(target):nonzero()
  if idx:numel() == 0 then return sorted[sorted:size(1)] end
  return sorted[idx:reshape(-1)[1]]
end
viz._cumulative_sum_threshold = cumulative_sum_threshold

-- attr as a float64 H x W map (channels summed over reduction_axis)
local function combine(who, attr, reduction_axis)
  if not av.is_tensor(attr) then error(who .. ": attr must be a tensor (C x H x W, 1 x C x H x W or H x W), got " .. type(attr), 3) end
  local a = attr:double()
  if a:dim() == 4 then
    if a:size(1) ~= 1 then
      error(("%s: attr must be C x H x W, 1 x C x H x W or H x W (one image), got %s"):format(who, shape_str(attr)), 3)
    end
    a = a:select(1, 1)
  end
  if a:dim() == 3 then
    local ax = reduction_axis or 1
    if type(ax) ~= "number" or ax < 1 or ax > 3 or ax ~= math.floor(ax) then
      error(("%s: reduction_axis must be 1, 2 or 3 for a 3-d attribution, got %s"):format(who, tostring(reduction_axis)), 3)
    end
    a = a:sum(ax)
  elseif a:dim() ~= 2 then
    error(("%s: attr must be C x H x W, 1 x C x H x W or H x W, got %s"):format(who, shape_str(attr)), 3)
  end
  if a:numel() == 0 then error(who .. ": attr is empty", 3) end
  return a
end

local function normalize(who, attr, sign, outlier_perc, reduction_axis)
  sign = sign or "absolute_value"
  check_sign(who, sign)
  outlier_perc = outlier_perc or 2
  if type(outlier_perc) ~= "number" or outlier_perc < 0 or outlier_perc > 100 then
    error(("%s: outlier_perc must be a number in [0, 100], got %s"):format(who, tostring(outlier_perc)), 3)
  end
  local a = combine(who, attr, reduction_axis)
  local perc = 100 - outlier_perc
  local values, threshold
  if sign == "all" then
    values = a
    threshold = cumulative_sum_threshold(a:abs(), perc)
  elseif sign == "positive" then
    values = a:clamp(0, nil)
    threshold = cumulative_sum_threshold(values, perc)
  elseif sign == "negative" then
    -- Captum keeps the negative values and divides by minus the threshold of their magnitudes
    values = (-a):clamp(0, nil)
    threshold = cumulative_sum_threshold(values, perc)
  else
    values = a:abs()
    threshold = cumulative_sum_threshold(values, perc)
  end
  -- Captum asserts on a zero scale; an all-zero attribution (nothing to show) maps to zeros here
  if threshold == 0 or threshold ~= threshold then return av.zeros(a:size(1), a:size(2)) end
  return (values / threshold):clamp(-1, 1):float()
end

--- viz.normalize_attr(attr, sign = 'absolute_value', outlier_perc = 2, reduction_axis = 1) -> H x W float32
-- Captum's _normalize_attr: channels summed, scaled by the value at which the cumulative sum of the sorted
-- magnitudes reaches (100 - outlier_perc) % of the total, clipped to [-1, 1] ('all') or [0, 1] (the others;
-- 'negative' gives the magnitudes of the negative values).
function viz.normalize_attr(attr, sign, outlier_perc, reduction_axis)
  return normalize("visualize.normalize_attr", attr, sign, outlier_perc, reduction_axis)
end

-- ---- colours ------------------------------------------------------------------------------

local NAMED = {red = {1, 0, 0}, white = {1, 1, 1}, green = {0, 128 / 255, 0}, blue = {0, 0, 1}, black = {0, 0, 0}}

--- viz.RdWhGn: Captum's default map for sign 'all' (LinearSegmentedColormap.from_list red, white, green)
viz.RdWhGn = {NAMED.red, NAMED.white, NAMED.green}

local DEFAULT_CMAP = {all = viz.RdWhGn, positive = "Greens", negative = "Reds", absolute_value = "Blues"}

local function check_cmap(who, cmap)
  if type(cmap) == "string" then
    local ok, err = pcall(plot.colormap, cmap)
    if not ok then error(who .. ": " .. tostring(err):gsub("^.-: ", ""), 3) end
    return cmap
  end
  if type(cmap) ~= "table" or #cmap < 2 then
    error(who .. ": cmap must be a colormap name (plot.colormap_names()) or a list of at least 2 colours", 3)
  end
  local out = {}
  for i, c in ipairs(cmap) do
    local ok, r, g, b = pcall(plot.color, c)
    if not ok then error(("%s: cmap[%d]: %s"):format(who, i, tostring(r)), 3) end
    out[i] = {r, g, b}
  end
  return out
end

-- t (H x W) through a colormap over [vmin, vmax] -> float64 3 x H x W in [0, 1]
local function colorize(t, cmap, vmin, vmax)
  if type(cmap) == "string" then
    return plot.apply_colormap(t:float():contiguous(), cmap, {vmin = vmin, vmax = vmax}):double() / 255
  end
  local k = #cmap
  local pal = {}
  for i, c in ipairs(cmap) do pal[i] = {c[1], c[2], c[3]} end
  local P = av.tensor(pal, {dtype = "float64"})                          -- k x 3
  local v = ((t:double() - vmin) / (vmax - vmin)):clamp(0, 1)
  local f = v * (k - 1)
  local j = f:floor():clamp(0, k - 2)
  local u = (f - j):reshape(-1, 1)
  local jl = j:reshape(-1):long() + 1
  local c = P:index_select(1, jl) * (1 - u) + P:index_select(1, jl + 1) * u   -- HW x 3
  return c:t():reshape(3, t:size(1), t:size(2))
end
viz._colorize = colorize

-- an image as float64 3 x H x W in [0, 1]
local function as_image(who, img, what)
  what = what or "image"
  if not av.is_tensor(img) then
    error(("%s: %s must be a 3 x H x W tensor (uint8 or float in [0, 1]), got %s"):format(who, what, type(img)), 3)
  end
  local x = img
  if x:dim() == 4 and x:size(1) == 1 then x = x:select(1, 1) end
  if x:dim() == 2 then x = x:unsqueeze(1) end
  if x:dim() ~= 3 or (x:size(1) ~= 3 and x:size(1) ~= 1) then
    error(("%s: %s must be 3 x H x W (or 1 x H x W, H x W), got %s"):format(who, what, shape_str(img)), 3)
  end
  if x:dtype() == "uint8" then x = x:double() / 255 else x = x:double() end
  if x:size(1) == 1 then x = x:expand(3, x:size(2), x:size(3)) end
  return x:contiguous()
end

local function to_uint8(x) return (x * 255):round():clamp(0, 255):byte() end

local VIS_OPTS = {"method", "sign", "outlier_perc", "cmap", "alpha_overlay", "reduction_axis"}

--- viz.visualize_image_attr(attr, image, {method = 'heat_map', sign = 'absolute_value', outlier_perc = 2,
--   cmap = nil, alpha_overlay = 0.5}) -> uint8 3 x H x W (the panel, no axes)
-- method: heat_map | blended_heat_map (the grey original under the heat map) | original_image |
-- masked_image (image * normalised attr) | alpha_scaling (the image with alpha = normalised attr, on white).
-- Default colormaps as Captum: all -> red-white-green over [-1, 1], positive -> Greens, negative -> Reds,
-- absolute_value -> Blues over [0, 1]. Returns also the normalised map and the colormap's range.
function viz.visualize_image_attr(attr, image, opts)
  local who = "visualize.visualize_image_attr"
  opts = check_opts(who, opts, VIS_OPTS)
  local method = opts.method or "heat_map"
  check_method(who, method)
  local sign = opts.sign or "absolute_value"
  check_sign(who, sign)
  local alpha = opts.alpha_overlay or 0.5
  if type(alpha) ~= "number" or alpha < 0 or alpha > 1 then
    error(("%s: alpha_overlay must be a number in [0, 1], got %s"):format(who, tostring(alpha)), 2)
  end
  local img = image ~= nil and as_image(who, image) or nil
  if method == "original_image" then
    if not img then error(who .. ": method 'original_image' needs the image", 2) end
    return to_uint8(img)
  end
  if (method == "masked_image" or method == "alpha_scaling" or method == "blended_heat_map") and not img then
    error(("%s: method '%s' needs the image"):format(who, method), 2)
  end
  if (method == "masked_image" or method == "alpha_scaling") and sign == "all" then
    error(("%s: cannot draw '%s' with both positive and negative attributions (sign 'all'); choose sign "
      .. "'positive', 'negative' or 'absolute_value'"):format(who, method), 2)
  end
  local m = normalize(who, attr, sign, opts.outlier_perc, opts.reduction_axis)
  local H, W = m:size(1), m:size(2)
  if img and (img:size(2) ~= H or img:size(3) ~= W) then
    error(("%s: the attribution is %dx%d but the image is %dx%d; upsample the attribution to the image's size "
      .. "first (e.g. F.interpolate(attr, {size = {%d, %d}, mode = 'bilinear'}) for a Grad-CAM map)")
      :format(who, H, W, img:size(2), img:size(3), img:size(2), img:size(3)), 2)
  end
  local vmin, vmax = (sign == "all") and -1 or 0, 1
  local cmap = check_cmap(who, opts.cmap or DEFAULT_CMAP[sign])
  local out
  if method == "heat_map" then
    out = colorize(m, cmap, vmin, vmax)
  elseif method == "blended_heat_map" then
    -- matplotlib's imshow(mean(image), cmap = 'gray') stretches the grey image to its own range
    local g = img:mean(1)
    local lo, hi = g:min():item(), g:max():item()
    g = hi > lo and (g - lo) / (hi - lo) or g * 0
    out = g:unsqueeze(1) * (1 - alpha) + colorize(m, cmap, vmin, vmax) * alpha
  elseif method == "masked_image" then
    out = img * m:double():unsqueeze(1)
  else -- alpha_scaling
    local a = m:double():unsqueeze(1)
    out = img * a + (1 - a)
  end
  return to_uint8(out), m, vmin, vmax
end

-- ---- figures -------------------------------------------------------------------------------

local PANEL_KEYS = {"attr", "method", "sign", "title", "cmap", "outlier_perc", "alpha_overlay", "colorbar"}

local function draw_colorbar(S, R, cmap, vmin, vmax, x, y, w, h)
  local ramp = av.linspace(vmin, vmax, 256):view(1, 256)
  local img = to_uint8(colorize(ramp, cmap, vmin, vmax))
  S:paint_image(img, x, y, w, h, "bilinear")
  S:rectangle(x - 0.5, y - 0.5, w + 1, h + 1)
  S:set_source_rgba(0.25, 0.25, 0.25, 1)
  S:set_line_width(1)
  S:stroke()
  local ticks = vmin < 0 and {-1, -0.5, 0, 0.5, 1} or {0, 0.25, 0.5, 0.75, 1}
  for _, v in ipairs(ticks) do
    local px = x + (v - vmin) / (vmax - vmin) * w
    S:move_to(px, y + h)
    S:line_to(px, y + h + 4)
    S:stroke()
    R.draw_text(S, (v == math.floor(v)) and ("%d"):format(v) or tostring(v), px, y + h + 6,
      {size = 10, halign = "center", valign = "top"})
  end
end

--- viz.figure(image, panels, {title, cell = 224, cols, colorbar = true}) -> an aviary.plot figure
-- The original image, then one panel per {attr =, method =, sign =, title =, cmap =, outlier_perc =,
-- alpha_overlay =} entry, each titled; heat-map panels get a colour bar beneath showing their scale.
function viz.figure(image, panels, opts)
  local who = "visualize.figure"
  opts = check_opts(who, opts, {"title", "cell", "cols", "colorbar", "original_title"})
  local img = as_image(who, image)
  if type(panels) ~= "table" then error(who .. ": panels must be a list of {attr =, method =, sign =, title =}", 2) end
  local cell = opts.cell or 224
  if type(cell) ~= "number" or cell < 32 then error(who .. ": cell must be a number of pixels >= 32", 2) end
  local items = {{img = to_uint8(img), title = opts.original_title or "original"}}
  for i, p in ipairs(panels) do
    if type(p) ~= "table" then error(("%s: panels[%d] must be a table {attr =, method =, sign =, title =}"):format(who, i), 2) end
    for k in pairs(p) do
      if not member(PANEL_KEYS, k) then
        error(("%s: panels[%d] has unknown key '%s' (valid: %s)"):format(who, i, tostring(k), table.concat(PANEL_KEYS, ", ")), 2)
      end
    end
    local method, sign = p.method or "heat_map", p.sign or "absolute_value"
    local ok, panel, _, vmin, vmax = pcall(viz.visualize_image_attr, p.attr, img,
      {method = method, sign = sign, cmap = p.cmap, outlier_perc = p.outlier_perc, alpha_overlay = p.alpha_overlay})
    if not ok then error(("%s: panels[%d]: %s"):format(who, i, tostring(panel):gsub("^visualize%.visualize_image_attr: ", "")), 2) end
    local bar = (method == "heat_map" or method == "blended_heat_map") and opts.colorbar ~= false and p.colorbar ~= false
    items[#items + 1] = {img = panel, title = p.title or (method .. " (" .. sign .. ")"), bar = bar, vmin = vmin,
      vmax = vmax, cmap = bar and check_cmap(who, p.cmap or DEFAULT_CMAP[sign]) or nil}
  end
  local n = #items
  local cols = opts.cols or math.min(n, 4)
  if type(cols) ~= "number" or cols < 1 or cols ~= math.floor(cols) then error(who .. ": cols must be a positive integer", 2) end
  cols = math.min(cols, n)
  local rows = math.ceil(n / cols)
  local any_bar = false
  for _, it in ipairs(items) do if it.bar then any_bar = true end end
  local pad, title_h = 14, 24
  local bar_h = any_bar and 36 or 0
  local fig_title_h = opts.title and 36 or 0
  local cw, ch = cell + pad, title_h + cell + bar_h + pad
  local Wd, Hd = math.floor(pad + cols * cw), math.floor(fig_title_h + pad + rows * ch)
  local fig = plot.figure{width = Wd, height = Hd, title = opts.title}
  local ih, iw = img:size(2), img:size(3)
  fig._draw = function(S, _, R)
    if opts.title then
      R.draw_text(S, R.fit(S, opts.title, Wd - 16, R.SIZE.title, true), Wd / 2, 10,
        {size = R.SIZE.title, bold = true, halign = "center", valign = "top"})
    end
    for i, it in ipairs(items) do
      local r, c = (i - 1) // cols, (i - 1) % cols
      local x0, y0 = pad + c * cw, fig_title_h + pad + r * ch
      R.draw_text(S, R.fit(S, it.title, cell, 13, true), x0 + cell / 2, y0 + 2,
        {size = 13, bold = true, halign = "center", valign = "top"})
      local x, y, w, h = R.fit_box(ih, iw, x0, y0 + title_h, cell, cell)
      S:paint_image(it.img, x, y, w, h, "bilinear")
      if it.bar then
        draw_colorbar(S, R, it.cmap, it.vmin, it.vmax, x0 + 10, y0 + title_h + cell + 6, cell - 20, 10)
      end
    end
  end
  fig.panels = items
  return fig
end

--- viz.feature_maps(activation, {channels = nil | list (1-based), max = 64, cmap = 'viridis', cols, title,
--   cell = 96}) -> figure, channels
-- One image's activations at a layer (C x h x w or 1 x C x h x w) as tiled heat maps titled with their
-- channel numbers, each normalised to its own range; by default the channels with the largest mean
-- activation (up to max), strongest first.
function viz.feature_maps(activation, opts)
  local who = "visualize.feature_maps"
  opts = check_opts(who, opts, {"channels", "max", "cmap", "cols", "title", "cell"})
  if not av.is_tensor(activation) then error(who .. ": activation must be a C x h x w tensor, got " .. type(activation), 2) end
  local a = activation
  if a:dim() == 4 then
    if a:size(1) ~= 1 then error(("%s: activation must be one image's (C x h x w or 1 x C x h x w), got %s"):format(who, shape_str(a)), 2) end
    a = a:select(1, 1)
  end
  if a:dim() ~= 3 then error(("%s: activation must be C x h x w (or 1 x C x h x w), got %s"):format(who, shape_str(activation)), 2) end
  a = a:double():contiguous()
  local C = a:size(1)
  local cmap = opts.cmap or "viridis"
  check_cmap(who, cmap)
  local maxn = opts.max or 64
  if type(maxn) ~= "number" or maxn < 1 then error(who .. ": max must be a positive number", 2) end
  local chans = {}
  if opts.channels ~= nil then
    if type(opts.channels) ~= "table" or #opts.channels == 0 then error(who .. ": channels must be a non-empty list of 1-based channel numbers", 2) end
    for i, c in ipairs(opts.channels) do
      if type(c) ~= "number" or c ~= math.floor(c) or c < 1 or c > C then
        error(("%s: channels[%d] = %s is not a channel of this %d-channel activation (1..%d)"):format(who, i, tostring(c), C, C), 2)
      end
      chans[i] = c
    end
  else
    local means = a:flatten(2):mean(2)
    local k = math.min(maxn, C)
    local _, idx = means:topk(k)
    for i = 1, k do chans[i] = idx[i] end
  end
  local images, caps = {}, {}
  for i, c in ipairs(chans) do
    local m = a[c]
    local lo, hi = m:min():item(), m:max():item()
    if hi <= lo then hi = lo + 1 end
    images[i] = plot.apply_colormap(m:float():contiguous(), cmap, {vmin = lo, vmax = hi})
    caps[i] = ("ch %d"):format(c)
  end
  local fig = plot.image_grid{images = images, captions = caps, cols = opts.cols, cell = opts.cell or 96,
    title = opts.title, filter = "nearest"}
  return fig, chans
end

viz.SIGNS, viz.METHODS = SIGNS, METHODS

return viz
