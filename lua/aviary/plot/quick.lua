-- aviary.plot's one-call conveniences (plot.lines, plot.bars, plot.heatmap,
-- plot.image_grid, plot.collage, ...): each builds a figure and returns it.
-- Loaded by aviary.plot, which passes itself in; not a public module.
return function(plot)
local fail, check_opts, set_of = plot._fail, plot._check_opts, plot._set_of
local numbers, strings = plot._numbers, plot._strings

local COMMON = {"width", "height"}

-- checks opts against the common, axes and kind-specific names; returns fig, ax
local function start(fn, opts, kind, defaults)
  opts = check_opts(fn, opts, set_of(COMMON, plot._SET_OPTS, kind))
  local fig = plot.figure{width = opts.width or (defaults and defaults.width), height = opts.height or (defaults and defaults.height)}
  local ax = fig:axes(1)
  local s = {}
  for _, k in ipairs(plot._SET_OPTS) do s[k] = opts[k] end
  local ok, err = pcall(ax.set, ax, s)
  if not ok then fail(fn, "%s", (tostring(err):gsub("^Axes:set: ", ""))) end
  return fig, ax, opts
end

--- plot.lines{series = {{x =, y =, label =, color =, dash =, width =, marker =}, ...}, ...}
function plot.lines(opts)
  local fn = "aviary.plot.lines"
  local fig, ax
  fig, ax, opts = start(fn, opts, {"series"})
  if type(opts.series) ~= "table" or #opts.series == 0 then fail(fn, "series must be a non-empty list of {x =, y =, label =}") end
  for i, s in ipairs(opts.series) do
    if type(s) ~= "table" then fail(fn, "series[%d] must be a table {x =, y =, label =}", i) end
    check_opts(fn, s, set_of({"x", "y", "label", "color", "dash", "width", "marker"}), ("series[%d]"):format(i))
    if s.y == nil then fail(fn, "series[%d].y is missing", i) end
    local ok, err = pcall(ax.line, ax, s.x, s.y, {label = s.label, color = s.color, dash = s.dash, width = s.width, marker = s.marker})
    if not ok then fail(fn, "series[%d]: %s", i, tostring(err):gsub("^Axes:line: ", "")) end
  end
  return fig
end

--- plot.bars{labels =, values =, sort = 'desc'|'asc', top = n, ref = {value =, label =}, horizontal, color, colors, ...}
function plot.bars(opts)
  local fn = "aviary.plot.bars"
  local fig, ax
  fig, ax, opts = start(fn, opts, {"labels", "values", "sort", "top", "ref", "horizontal", "color", "colors"})
  local vs = numbers(fn, opts.values, "values")
  local ls
  if opts.labels == nil then
    ls = {}
    for i = 1, #vs do ls[i] = tostring(i) end
  else
    ls = strings(fn, opts.labels, "labels")
  end
  if #ls ~= #vs then fail(fn, "labels and values have different lengths (%d and %d)", #ls, #vs) end
  if opts.colors ~= nil and (type(opts.colors) ~= "table" or #opts.colors ~= #vs) then
    fail(fn, "colors must be a list of %d colours (one per bar)", #vs)
  end
  local idx = {}
  for i = 1, #vs do idx[i] = i end
  if opts.sort ~= nil then
    if opts.sort ~= "desc" and opts.sort ~= "asc" then fail(fn, "sort must be 'desc', 'asc' or nil, got '%s'", tostring(opts.sort)) end
    local desc = opts.sort == "desc"
    table.sort(idx, function(a, b)
      if vs[a] ~= vs[b] then if desc then return vs[a] > vs[b] else return vs[a] < vs[b] end end
      return a < b
    end)
  end
  if opts.top ~= nil then
    if type(opts.top) ~= "number" or opts.top < 1 or opts.top ~= math.floor(opts.top) then
      fail(fn, "top must be a positive integer, got %s", tostring(opts.top))
    end
    for i = #idx, opts.top + 1, -1 do idx[i] = nil end
  end
  local L, V, C = {}, {}, opts.colors and {} or nil
  for k, i in ipairs(idx) do
    L[k], V[k] = ls[i], vs[i]
    if C then C[k] = opts.colors[i] end
  end
  ax:bar(L, V, {color = opts.color, colors = C, horizontal = opts.horizontal})
  if opts.ref ~= nil then
    local r = opts.ref
    if type(r) == "number" then r = {value = r} end
    if type(r) ~= "table" or type(r.value) ~= "number" then fail(fn, "ref must be {value = number, label = string}") end
    local o = {label = r.label, color = r.color or {0.84, 0.15, 0.16}, dash = true, width = 1.8}
    if opts.horizontal then ax:vline(r.value, o) else ax:hline(r.value, o) end
  end
  return fig
end

--- plot.grouped_bars{categories =, series = {{label =, values =}, ...}, horizontal, ...}
function plot.grouped_bars(opts)
  local fn = "aviary.plot.grouped_bars"
  local fig, ax
  fig, ax, opts = start(fn, opts, {"categories", "series", "horizontal", "colors"})
  local ok, err = pcall(ax.grouped_bar, ax, opts.categories, opts.series, {horizontal = opts.horizontal, colors = opts.colors})
  if not ok then fail(fn, "%s", tostring(err):gsub("^Axes:grouped_bar: ", "")) end
  return fig
end

--- plot.heatmap{data =, cmap, vmin, vmax, colorbar, colorbar_label, xlabels, ylabels, tick_every, annotate, fmt, ...}
function plot.heatmap(opts)
  local fn = "aviary.plot.heatmap"
  local keys = {"data", "cmap", "vmin", "vmax", "colorbar", "colorbar_label", "xlabels", "ylabels", "tick_every", "annotate", "fmt"}
  local fig, ax
  fig, ax, opts = start(fn, opts, keys, {width = 760, height = 640})
  if opts.data == nil then fail(fn, "data is missing") end
  local o = {}
  for _, k in ipairs(keys) do if k ~= "data" then o[k] = opts[k] end end
  local ok, err = pcall(ax.heatmap, ax, opts.data, o)
  if not ok then fail(fn, "%s", tostring(err):gsub("^Axes:heatmap: ", "")) end
  return fig
end

--- plot.scatter{x =, y =, groups =, group_names =, colors, color, size, alpha, legend, ...}
function plot.scatter(opts)
  local fn = "aviary.plot.scatter"
  local fig, ax
  local legend = type(opts) == "table" and opts.legend
  if type(legend) == "boolean" then opts.legend = nil end
  fig, ax, opts = start(fn, opts, {"x", "y", "groups", "group_names", "colors", "color", "size", "alpha"})
  if type(legend) == "boolean" then opts.legend = legend end
  local ok, err = pcall(ax.scatter, ax, opts.x, opts.y, {groups = opts.groups, group_names = opts.group_names, colors = opts.colors,
    color = opts.color, size = opts.size, alpha = opts.alpha, legend = legend ~= false})
  if not ok then fail(fn, "%s", tostring(err):gsub("^Axes:scatter: ", "")) end
  local a = ax.artists[#ax.artists]
  if legend == nil and a.groups and a.ngroups > 8 then ax:set{legend = "outside"} end
  return fig
end

--- plot.hist{series = {{values =, label =, color =}, ...}, bins = 30, range, density, alpha, ...}
function plot.hist(opts)
  local fn = "aviary.plot.hist"
  local fig, ax
  fig, ax, opts = start(fn, opts, {"series", "bins", "range", "density", "alpha"})
  if type(opts.series) ~= "table" or #opts.series == 0 then fail(fn, "series must be a non-empty list of {values =, label =}") end
  local all, vals = {}, {}
  for i, s in ipairs(opts.series) do
    if type(s) ~= "table" then fail(fn, "series[%d] must be a table {values =, label =}", i) end
    check_opts(fn, s, set_of({"values", "label", "color"}), ("series[%d]"):format(i))
    vals[i] = numbers(fn, s.values, ("series[%d].values"):format(i))
    for _, v in ipairs(vals[i]) do all[#all + 1] = v end
  end
  local range = opts.range
  if range == nil then
    local lo, hi = plot._data_range(fn, all)
    range = {lo, hi}
  end
  for i, s in ipairs(opts.series) do
    local ok, err = pcall(ax.hist, ax, vals[i], {bins = opts.bins, range = range, label = s.label, color = s.color,
      alpha = opts.alpha, density = opts.density})
    if not ok then fail(fn, "%s", tostring(err):gsub("^Axes:hist: ", "")) end
  end
  return fig
end

local function image_list(fn, images)
  if type(images) ~= "table" or #images == 0 then fail(fn, "images must be a non-empty list of image tensors") end
  for i, img in ipairs(images) do plot._check_image(fn, img, ("images[%d]"):format(i)) end
  return images
end

local function caption_color(fn, c)
  if c == nil then return {0.13, 0.13, 0.13} end
  if c == "green" then return {0.0, 0.55, 0.1} end
  if c == "red" then return {0.85, 0.05, 0.05} end
  return plot._rgb(c, fn)
end

--- plot.image_grid{images =, captions =, caption_colors =, cols = auto, cell = 160, title}
function plot.image_grid(opts)
  local fn = "aviary.plot.image_grid"
  opts = check_opts(fn, opts, set_of({"images", "captions", "caption_colors", "cols", "cell", "title", "filter"}))
  local images = image_list(fn, opts.images)
  local n = #images
  local caps = opts.captions and strings(fn, opts.captions, "captions")
  if caps and #caps ~= n then fail(fn, "captions has %d entries for %d images", #caps, n) end
  local ccol = {}
  if opts.caption_colors ~= nil then
    if type(opts.caption_colors) ~= "table" or #opts.caption_colors ~= n then
      fail(fn, "caption_colors must list %d colours (one per image)", n)
    end
    for i = 1, n do ccol[i] = caption_color(fn, opts.caption_colors[i]) end
  end
  local cell = opts.cell or 160
  if type(cell) ~= "number" or cell < 8 then fail(fn, "cell must be a number of pixels >= 8, got %s", tostring(cell)) end
  local cols = opts.cols or math.min(n, math.max(1, math.ceil(math.sqrt(n * 1.3))))
  if type(cols) ~= "number" or cols < 1 or cols ~= math.floor(cols) then fail(fn, "cols must be a positive integer") end
  cols = math.min(cols, n)
  local rows = math.ceil(n / cols)
  local lines = 0
  if caps then
    for _, c in ipairs(caps) do
      local k = select(2, c:gsub("\n", "")) + 1
      if k > lines then lines = k end
    end
  end
  local capsize = cell >= 100 and 12 or 10
  local pad, caph = 8, lines * (capsize + 4) + (lines > 0 and 4 or 0)
  local title_h = opts.title and 34 or 0
  local W = math.floor(pad + cols * (cell + pad))
  local H = math.floor(title_h + pad + rows * (cell + caph + pad))
  local fig = plot.figure{width = W, height = H, title = opts.title}
  fig._draw = function(S, _, R)
    if opts.title then
      R.draw_text(S, R.fit(S, opts.title, W - 16, R.SIZE.title, true), W / 2, 10, {size = R.SIZE.title, bold = true,
        halign = "center", valign = "top"})
    end
    for i, img in ipairs(images) do
      local r, c = (i - 1) // cols, (i - 1) % cols
      local x0, y0 = pad + c * (cell + pad), title_h + pad + r * (cell + caph + pad)
      local ih, iw = R.image_hw(img)
      local x, y, w, h = R.fit_box(ih, iw, x0, y0, cell, cell)
      S:paint_image(img, x, y, w, h, opts.filter or "bilinear")
      if caps then
        local k = 0
        for line in (caps[i] .. "\n"):gmatch("(.-)\n") do
          R.draw_text(S, R.fit(S, line, cell, capsize, true), x0 + cell / 2, y0 + cell + 4 + k * (capsize + 4),
            {size = capsize, bold = true, halign = "center", valign = "top", color = ccol[i]})
          k = k + 1
        end
      end
    end
  end
  return fig
end

--- plot.collage{images =, x =, y =, thumb = 40, width = 1100, height = 1100, title, border_colors}
function plot.collage(opts)
  local fn = "aviary.plot.collage"
  opts = check_opts(fn, opts, set_of({"images", "x", "y", "thumb", "width", "height", "title", "border_colors"}))
  local images = image_list(fn, opts.images)
  local xs, ys = numbers(fn, opts.x, "x"), numbers(fn, opts.y, "y")
  if #xs ~= #images or #ys ~= #images then
    fail(fn, "x and y must have one value per image (%d images, %d x, %d y)", #images, #xs, #ys)
  end
  local borders
  if opts.border_colors ~= nil then
    if type(opts.border_colors) ~= "table" or #opts.border_colors ~= #images then
      fail(fn, "border_colors must list %d colours (one per image)", #images)
    end
    borders = {}
    for i, c in ipairs(opts.border_colors) do borders[i] = caption_color(fn, c) end
  end
  local thumb = opts.thumb or 40
  if type(thumb) ~= "number" or thumb < 4 then fail(fn, "thumb must be a number of pixels >= 4") end
  local fig = plot.figure{width = opts.width or 1100, height = opts.height or 1100, title = opts.title}
  local W, H = fig.width, fig.height
  local xlo, xhi = plot._data_range(fn, xs)
  local ylo, yhi = plot._data_range(fn, ys)
  fig._draw = function(S, _, R)
    local top = 8
    if opts.title then
      R.draw_text(S, R.fit(S, opts.title, W - 16, R.SIZE.title, true), W / 2, 10, {size = R.SIZE.title, bold = true,
        halign = "center", valign = "top"})
      top = 36
    end
    local m = 8
    local aw, ah = math.max(1, W - 2 * m - thumb), math.max(1, H - top - m - thumb)
    for i, img in ipairs(images) do
      local px = m + (xs[i] - xlo) / (xhi - xlo) * aw
      local py = top + (1 - (ys[i] - ylo) / (yhi - ylo)) * ah
      if px == px and py == py then
        local ih, iw = R.image_hw(img)
        local x, y, w, h = R.fit_box(ih, iw, px, py, thumb, thumb)
        if borders then
          S:rectangle(x - 2, y - 2, w + 4, h + 4)
          R.set_color(S, borders[i])
          S:fill()
        end
        S:paint_image(img, x, y, w, h, "bilinear")
      end
    end
  end
  return fig
end
end
