--- aviary.plot: PNG plots with axes, ticks, labels, legends and colour bars,
-- drawn with cairo (av._plot, lua/l_plot.c over runtime/plot/surface.c).
--   local plot = require "aviary.plot"
--   local fig = plot.figure{width = 900, height = 560}
--   local ax = fig:axes()
--   ax:line(epochs, train_loss, {label = "train"})
--   ax:line(epochs, val_loss, {label = "validation", dash = true})
--   ax:set{title = "Loss", xlabel = "epoch", ylabel = "loss"}
--   fig:save("loss.png")
-- Axes methods record what to draw; the figure is laid out and drawn when it
-- is saved (fig:save, fig:png, fig:tensor), so limits and ticks fit all the
-- data. One-call conveniences (plot.lines, plot.bars, plot.heatmap, ...) build
-- a one-panel figure. Colours: names ('C0'..'C9', 'red', ...), '#rrggbb', or
-- {r, g, b} in 0..1 (0..255 when a component is above 1). See docs/plot.md.
local av = require "aviary"
local P = av._plot
local tables = require "aviary.plot.colormaps"

local plot = {}

-- ---- errors and options ------------------------------------------------------

local function fail(fn, fmt, ...)
  error(("%s: " .. fmt):format(fn, ...), 0)
end
plot._fail = fail

local function sorted_keys(t)
  local k = {}
  for n in pairs(t) do k[#k + 1] = tostring(n) end
  table.sort(k)
  return k
end

--- checks an options table against a set of valid names; returns it ({} for nil)
local function check_opts(fn, opts, valid, what)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(fn, "%s must be a table, got %s", what or "options", type(opts)) end
  for k in pairs(opts) do
    if not valid[k] then
      local names = sorted_keys(valid)
      local near = require("aviary.util").nearest(tostring(k), names)
      fail(fn, "unknown option '%s'%s; valid: %s", tostring(k),
        near and (" (did you mean '%s'?)"):format(near) or "", table.concat(names, ", "))
    end
  end
  return opts
end
plot._check_opts = check_opts

local function set_of(...)
  local s = {}
  for _, list in ipairs({...}) do
    for _, k in ipairs(list) do s[k] = true end
  end
  return s
end
plot._set_of = set_of

--- a Lua array of numbers from a Lua array or a 1-d tensor
local function numbers(fn, v, what, allow_empty)
  local out
  if av.is_tensor(v) then
    if v:dim() ~= 1 then fail(fn, "%s must be a 1-d tensor or a Lua array, got a %d-d tensor", what, v:dim()) end
    out = v:double():tolist()
  elseif type(v) == "table" then
    out = {}
    local n = #v
    for i = 1, n do
      local x = v[i]
      if type(x) ~= "number" then
        if av.is_tensor(x) and x:numel() == 1 then x = x:item()
        else fail(fn, "%s[%d] must be a number, got %s", what, i, type(x)) end
      end
      out[i] = x
    end
  else
    fail(fn, "%s must be a Lua array or a 1-d tensor, got %s", what, type(v))
  end
  if #out == 0 and not allow_empty then fail(fn, "%s is empty", what) end
  return out
end
plot._numbers = numbers

local function strings(fn, v, what)
  if type(v) ~= "table" then fail(fn, "%s must be a list of strings, got %s", what, type(v)) end
  local out = {}
  for i = 1, #v do out[i] = tostring(v[i]) end
  return out
end
plot._strings = strings

-- ---- colours -----------------------------------------------------------------

local NAMED = {
  black = {0, 0, 0}, white = {1, 1, 1}, gray = {0.5, 0.5, 0.5}, grey = {0.5, 0.5, 0.5},
  lightgray = {0.83, 0.83, 0.83}, darkgray = {0.33, 0.33, 0.33},
  red = {0.84, 0.15, 0.16}, green = {0.17, 0.63, 0.17}, blue = {0.12, 0.47, 0.71},
  orange = {1.0, 0.5, 0.05}, purple = {0.58, 0.4, 0.74}, brown = {0.55, 0.34, 0.29},
  pink = {0.89, 0.47, 0.76}, olive = {0.74, 0.74, 0.13}, cyan = {0.09, 0.75, 0.81},
  yellow = {0.95, 0.85, 0.1}, navy = {0.0, 0.0, 0.5}, darkred = {0.55, 0.0, 0.0},
  darkgreen = {0.0, 0.39, 0.0}, magenta = {0.8, 0.1, 0.8},
}
for i = 0, 9 do
  local t = tables.tab10
  NAMED["C" .. i] = {t[3 * i + 1], t[3 * i + 2], t[3 * i + 3]}
end

--- plot.color(name_or_table) -> r, g, b in 0..1
function plot.color(c, fn)
  fn = fn or "aviary.plot.color"
  if type(c) == "string" then
    local hex = c:match("^#(%x%x%x%x%x%x)$")
    if hex then
      return tonumber(hex:sub(1, 2), 16) / 255, tonumber(hex:sub(3, 4), 16) / 255, tonumber(hex:sub(5, 6), 16) / 255
    end
    local v = NAMED[c]
    if not v then
      fail(fn, "unknown colour '%s' (use '#rrggbb', {r, g, b} in 0..1, or one of: %s)", c,
        table.concat(sorted_keys(NAMED), ", "))
    end
    return v[1], v[2], v[3]
  elseif type(c) == "table" then
    local r, g, b = c[1] or c.r, c[2] or c.g, c[3] or c.b
    if type(r) ~= "number" or type(g) ~= "number" or type(b) ~= "number" then
      fail(fn, "a colour table must be {r, g, b} with numbers")
    end
    if r > 1 or g > 1 or b > 1 then r, g, b = r / 255, g / 255, b / 255 end
    local function cl(x) return x < 0 and 0 or x > 1 and 1 or x end
    return cl(r), cl(g), cl(b)
  end
  fail(fn, "a colour must be a name, '#rrggbb' or {r, g, b}, got %s", type(c))
end

local function rgb(c, fn) return {plot.color(c, fn)} end
plot._rgb = rgb

--- plot.palette(n) -> n colours {r, g, b}: tab10 (n <= 10), tab20 (n <= 20), then golden-angle hues
function plot.palette(n)
  if type(n) ~= "number" or n < 0 or n ~= math.floor(n) then
    fail("aviary.plot.palette", "n must be a non-negative integer, got %s", tostring(n))
  end
  local out = {}
  if n <= 20 then
    local t, m = n <= 10 and tables.tab10 or tables.tab20, n <= 10 and 10 or 20
    for i = 0, n - 1 do
      local j = i % m
      out[i + 1] = {t[3 * j + 1], t[3 * j + 2], t[3 * j + 3]}
    end
    return out
  end
  local function hsl(h, s, l)
    local function f(k)
      local kk = (k + h * 12) % 12
      return l - s * math.min(l, 1 - l) * math.max(-1, math.min(kk - 3, 9 - kk, 1))
    end
    return {f(0), f(8), f(4)}
  end
  for i = 0, n - 1 do
    local h = (i * 0.618033988749895) % 1
    local l = ({0.45, 0.62, 0.33})[i % 3 + 1]
    local s = ({0.75, 0.6, 0.85})[(i // 3) % 3 + 1]
    out[i + 1] = hsl(h, s, l)
  end
  return out
end

local CMAPS = {
  viridis = "viridis", magma = "magma", inferno = "inferno", plasma = "plasma", cividis = "cividis",
  gray = "gray", grey = "gray", Blues = "Blues", Reds = "Reds", Greens = "Greens", Oranges = "Oranges",
  Purples = "Purples", RdBu_r = "RdBu_r", coolwarm = "coolwarm", jet = "jet", turbo = "turbo",
}

local function cmap_table(name, fn)
  local key = type(name) == "string" and CMAPS[name]
  if not key then
    fail(fn, "unknown colormap '%s' (valid: %s)", tostring(name), table.concat(sorted_keys(CMAPS), ", "))
  end
  return tables[key]
end
plot._cmap_table = cmap_table

--- plot.colormap(name) -> function(v) -> r, g, b (v in [0, 1], clamped)
function plot.colormap(name)
  local t = cmap_table(name, "aviary.plot.colormap")
  local k = #t // 3
  return function(v)
    if v ~= v then return 1, 1, 1 end
    v = v < 0 and 0 or v > 1 and 1 or v
    local f = v * (k - 1)
    local j = math.floor(f)
    if j >= k - 1 then j = k - 2 end
    local u = f - j
    local a, b = 3 * j, 3 * j + 3
    return t[a + 1] * (1 - u) + t[b + 1] * u, t[a + 2] * (1 - u) + t[b + 2] * u, t[a + 3] * (1 - u) + t[b + 3] * u
  end
end

--- plot.colormap_names() -> the sorted list of colormap names
function plot.colormap_names() return sorted_keys(CMAPS) end

-- min and max of a tensor's finite values (0, 1 when there are none)
local function finite_range(t)
  local d = t:double()
  local lo, hi = d:min():item(), d:max():item()
  if lo == lo and hi == hi and lo > -math.huge and hi < math.huge then return lo, hi end
  local m = d:isfinite()
  if m:sum():item() == 0 then return 0, 1 end
  d = d:masked_select(m)
  return d:min():item(), d:max():item()
end
plot._finite_range = finite_range

--- plot.apply_colormap(t, name, {vmin, vmax}) -> uint8 3 x H x W (t: H x W numbers; NaN -> white)
function plot.apply_colormap(t, name, opts)
  local fn = "aviary.plot.apply_colormap"
  opts = check_opts(fn, opts, {vmin = true, vmax = true})
  if not av.is_tensor(t) then fail(fn, "expected an H x W tensor, got %s", type(t)) end
  if t:dim() ~= 2 then fail(fn, "expected an H x W tensor, got %d dims", t:dim()) end
  if t:numel() == 0 then fail(fn, "the tensor is empty") end
  local tab = cmap_table(name or "viridis", fn)
  local vmin, vmax = opts.vmin, opts.vmax
  for k, v in pairs({vmin = vmin, vmax = vmax}) do
    if type(v) ~= "number" then fail(fn, "%s must be a number, got %s", k, type(v)) end
  end
  if vmin == nil or vmax == nil then
    local lo, hi = finite_range(t)
    vmin, vmax = vmin or lo, vmax or hi
  end
  if vmax < vmin then fail(fn, "vmax (%g) is below vmin (%g)", vmax, vmin) end
  return P.apply_colormap(t, tab, vmin, vmax)
end

-- ---- ticks -------------------------------------------------------------------

--- "nice" tick values (1, 2, 2.5, 5 x 10^k) covering [lo, hi], about n of them
function plot.nice_ticks(lo, hi, n)
  n = n or 6
  if hi < lo then lo, hi = hi, lo end
  if hi == lo then
    local d = lo == 0 and 1 or math.abs(lo) * 0.1
    lo, hi = lo - d, hi + d
  end
  local raw = (hi - lo) / math.max(1, n)
  local e = 10 ^ math.floor(math.log(raw, 10))
  local step
  for _, m in ipairs({1, 2, 2.5, 5, 10}) do
    if m * e >= raw * 0.999 then step = m * e break end
  end
  local ticks = {}
  local first = math.ceil(lo / step - 1e-9)
  for k = first, first + 1000 do
    local v = k * step
    if v > hi + step * 1e-9 then break end
    if math.abs(v) < step * 1e-9 then v = 0 end
    ticks[#ticks + 1] = v
  end
  return ticks, step
end

--- formats tick values with the decimals their step needs
function plot.tick_format(step)
  local m = step / 10 ^ math.floor(math.log(step, 10) + 1e-9)
  local dec = math.max(0, -math.floor(math.log(step, 10) + 1e-9) + ((math.abs(m - 2.5) < 1e-6) and 1 or 0))
  return function(v)
    local a = math.abs(v)
    if a ~= 0 and (a >= 1e6 or a < 1e-4) then
      local s = ("%.3g"):format(v)
      return s
    end
    local s = ("%." .. math.min(dec, 8) .. "f"):format(v)
    if s:match("^%-0%.?0*$") then s = s:sub(2) end
    return s
  end
end

-- ---- figure and axes ---------------------------------------------------------

local Figure, Axes = {}, {}
Figure.__index, Axes.__index = Figure, Axes
plot.Figure, plot.Axes = Figure, Axes

local FIG_OPTS = {"width", "height", "rows", "cols", "title"}

local function positive_int(fn, v, what, def)
  if v == nil then return def end
  if type(v) ~= "number" or v ~= math.floor(v) or v < 1 then
    fail(fn, "%s must be a positive integer, got %s", what, tostring(v))
  end
  return v
end

--- plot.figure{width = 900, height = 560, rows = 1, cols = 1, title}
function plot.figure(opts)
  local fn = "aviary.plot.figure"
  opts = check_opts(fn, opts, set_of(FIG_OPTS))
  local f = setmetatable({}, Figure)
  f.width = positive_int(fn, opts.width, "width", 900)
  f.height = positive_int(fn, opts.height, "height", 560)
  if f.width > 16000 or f.height > 16000 then fail(fn, "width and height must be at most 16000 pixels") end
  f.rows = positive_int(fn, opts.rows, "rows", 1)
  f.cols = positive_int(fn, opts.cols, "cols", 1)
  if opts.title ~= nil and type(opts.title) ~= "string" then fail(fn, "title must be a string") end
  f.title = opts.title
  f._axes = {}
  return f
end

--- fig:axes(i = 1) -> the i-th panel (row-major)
function Figure:axes(i)
  i = i or 1
  local n = self.rows * self.cols
  if type(i) ~= "number" or i ~= math.floor(i) or i < 1 or i > n then
    fail("Figure:axes", "panel index must be an integer in 1..%d, got %s", n, tostring(i))
  end
  local ax = self._axes[i]
  if not ax then
    ax = setmetatable({fig = self, index = i, artists = {}, opts = {}}, Axes)
    self._axes[i] = ax
  end
  return ax
end

local function add(ax, a)
  ax.artists[#ax.artists + 1] = a
  return ax
end

local function opt_color(fn, c)
  if c == nil then return nil end
  return rgb(c, fn)
end

local function dash_pattern(fn, d)
  if d == nil or d == false or d == "-" or d == "solid" then return nil end
  if d == true or d == "--" or d == "dashed" then return {6, 4} end
  if d == ":" or d == "dotted" then return {1.5, 3} end
  if d == "-." or d == "dashdot" then return {7, 3, 1.5, 3} end
  if type(d) == "table" then
    for i = 1, #d do
      if type(d[i]) ~= "number" or d[i] < 0 then fail(fn, "dash must be a list of non-negative lengths") end
    end
    return d
  end
  fail(fn, "dash must be true, '--', ':', '-.' or a list of lengths, got %s", tostring(d))
end

-- the next default colour of this axes (C0, C1, ...)
local function next_color(ax)
  ax._ncolor = (ax._ncolor or 0) + 1
  local t = tables.tab10
  local j = (ax._ncolor - 1) % 10
  return {t[3 * j + 1], t[3 * j + 2], t[3 * j + 3]}
end

local MARKERS = {o = true, s = true, ["^"] = true, x = true, ["+"] = true, ["."] = true, d = true}

--- ax:line(x, y, {label, color, width = 2, dash, marker, marker_size}) ; x nil -> 1..n
function Axes:line(x, y, opts)
  local fn = "Axes:line"
  opts = check_opts(fn, opts, set_of({"label", "color", "width", "dash", "marker", "marker_size", "alpha"}))
  local ys = numbers(fn, y, "y")
  local xs
  if x == nil then
    xs = {}
    for i = 1, #ys do xs[i] = i end
  else
    xs = numbers(fn, x, "x")
  end
  if #xs ~= #ys then fail(fn, "x and y have different lengths (%d and %d)", #xs, #ys) end
  if opts.marker ~= nil and not MARKERS[opts.marker] then
    fail(fn, "unknown marker '%s' (valid: %s)", tostring(opts.marker), table.concat(sorted_keys(MARKERS), " "))
  end
  return add(self, {kind = "line", x = xs, y = ys, label = opts.label, color = opt_color(fn, opts.color) or next_color(self),
    width = opts.width or 2, dash = dash_pattern(fn, opts.dash), marker = opts.marker, marker_size = opts.marker_size or 3.5,
    alpha = opts.alpha or 1})
end

--- ax:bar(labels, values, {color, colors, horizontal = false, label, width = 0.8})
function Axes:bar(labels, values, opts)
  local fn = "Axes:bar"
  opts = check_opts(fn, opts, set_of({"color", "colors", "horizontal", "label", "width"}))
  local vs = numbers(fn, values, "values")
  local ls
  if labels == nil then
    ls = {}
    for i = 1, #vs do ls[i] = tostring(i) end
  else
    ls = strings(fn, labels, "labels")
  end
  if #ls ~= #vs then fail(fn, "labels and values have different lengths (%d and %d)", #ls, #vs) end
  local colors
  if opts.colors ~= nil then
    if type(opts.colors) ~= "table" or #opts.colors ~= #vs then
      fail(fn, "colors must be a list of %d colours (one per bar)", #vs)
    end
    colors = {}
    for i, c in ipairs(opts.colors) do colors[i] = rgb(c, fn) end
  end
  return add(self, {kind = "bar", labels = ls, values = vs, color = opt_color(fn, opts.color) or next_color(self),
    colors = colors, horizontal = opts.horizontal and true or false, label = opts.label, width = opts.width or 0.8})
end

--- ax:grouped_bar(categories, series, {horizontal, colors}); series = {{label =, values =, color =}, ...}
function Axes:grouped_bar(categories, series, opts)
  local fn = "Axes:grouped_bar"
  opts = check_opts(fn, opts, set_of({"horizontal", "colors", "width"}))
  local cats = strings(fn, categories, "categories")
  if #cats == 0 then fail(fn, "categories is empty") end
  if type(series) ~= "table" or #series == 0 then fail(fn, "series must be a non-empty list of {label =, values =}") end
  local pal = plot.palette(#series)
  local ss = {}
  for i, s in ipairs(series) do
    if type(s) ~= "table" then fail(fn, "series[%d] must be a table {label =, values =}", i) end
    check_opts(fn, s, set_of({"label", "values", "color"}), ("series[%d]"):format(i))
    local vs = numbers(fn, s.values, ("series[%d].values"):format(i))
    if #vs ~= #cats then fail(fn, "series[%d].values has %d values for %d categories", i, #vs, #cats) end
    local c = s.color and rgb(s.color, fn) or (opts.colors and opts.colors[i] and rgb(opts.colors[i], fn)) or pal[i]
    ss[i] = {label = s.label and tostring(s.label) or ("series " .. i), values = vs, color = c}
  end
  return add(self, {kind = "grouped_bar", labels = cats, series = ss, horizontal = opts.horizontal and true or false,
    width = opts.width or 0.8})
end

local function ref_line(self, fn, kind, v, opts)
  opts = check_opts(fn, opts, set_of({"label", "color", "dash", "width"}))
  if type(v) ~= "number" then fail(fn, "%s must be a number, got %s", kind == "hline" and "y" or "x", type(v)) end
  local dash = opts.dash
  if dash == nil then dash = true end
  return add(self, {kind = kind, value = v, label = opts.label, color = opt_color(fn, opts.color) or {0.2, 0.2, 0.2},
    dash = dash_pattern(fn, dash), width = opts.width or 1.5})
end

--- ax:hline(y, {label, color, dash = true, width}) ; ax:vline(x, {...})
function Axes:hline(y, opts) return ref_line(self, "Axes:hline", "hline", y, opts) end
function Axes:vline(x, opts) return ref_line(self, "Axes:vline", "vline", x, opts) end

--- ax:scatter(x, y, {groups, group_names, colors, color, size = 3, alpha = 0.8, legend = true, label})
function Axes:scatter(x, y, opts)
  local fn = "Axes:scatter"
  opts = check_opts(fn, opts, set_of({"groups", "group_names", "colors", "color", "size", "alpha", "legend", "label"}))
  local xs, ys = numbers(fn, x, "x"), numbers(fn, y, "y")
  if #xs ~= #ys then fail(fn, "x and y have different lengths (%d and %d)", #xs, #ys) end
  local a = {kind = "scatter", x = xs, y = ys, size = opts.size or 3, alpha = opts.alpha or 0.8,
    legend = opts.legend ~= false, label = opts.label}
  if opts.groups ~= nil then
    local g = numbers(fn, opts.groups, "groups")
    if #g ~= #xs then fail(fn, "groups has %d entries for %d points", #g, #xs) end
    local ng = 0
    for i, v in ipairs(g) do
      if v ~= math.floor(v) or v < 1 then fail(fn, "groups[%d] must be a positive integer (1-based), got %s", i, tostring(v)) end
      if v > ng then ng = v end
    end
    if opts.group_names ~= nil then
      local names = strings(fn, opts.group_names, "group_names")
      if #names < ng then fail(fn, "group_names has %d names but groups go up to %d", #names, ng) end
      ng = #names
      a.group_names = names
    end
    local cols = {}
    if opts.colors ~= nil then
      if type(opts.colors) ~= "table" or #opts.colors < ng then fail(fn, "colors must list at least %d colours (one per group)", ng) end
      for i = 1, ng do cols[i] = rgb(opts.colors[i], fn) end
    else
      cols = plot.palette(ng)
    end
    a.groups, a.ngroups, a.colors = g, ng, cols
  else
    a.color = opt_color(fn, opts.color) or next_color(self)
  end
  return add(self, a)
end

--- histogram counts of values over bins: returns edges (bins + 1) and counts
function plot.histogram(values, bins, lo, hi, density)
  local counts = {}
  for i = 1, bins do counts[i] = 0 end
  local w = (hi - lo) / bins
  local n = 0
  for _, v in ipairs(values) do
    if v == v and v >= lo and v <= hi then
      local b = math.floor((v - lo) / w) + 1
      if b > bins then b = bins end
      counts[b] = counts[b] + 1
      n = n + 1
    end
  end
  if density and n > 0 then
    for i = 1, bins do counts[i] = counts[i] / (n * w) end
  end
  local edges = {}
  for i = 0, bins do edges[i + 1] = lo + i * w end
  return edges, counts
end

local function data_range(fn, vs)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(vs) do
    if v == v then
      if v < lo then lo = v end
      if v > hi then hi = v end
    end
  end
  if lo > hi then fail(fn, "values has no finite number") end
  if lo == hi then lo, hi = lo - 0.5, hi + 0.5 end
  return lo, hi
end
plot._data_range = data_range

--- ax:hist(values, {bins = 30, range = {lo, hi}, label, color, alpha = 0.6, density = false})
function Axes:hist(values, opts)
  local fn = "Axes:hist"
  opts = check_opts(fn, opts, set_of({"bins", "range", "label", "color", "alpha", "density"}))
  local vs = numbers(fn, values, "values")
  local bins = positive_int(fn, opts.bins, "bins", 30)
  local lo, hi
  if opts.range ~= nil then
    if type(opts.range) ~= "table" or type(opts.range[1]) ~= "number" or type(opts.range[2]) ~= "number" or opts.range[2] <= opts.range[1] then
      fail(fn, "range must be {lo, hi} with lo < hi")
    end
    lo, hi = opts.range[1], opts.range[2]
  else
    lo, hi = data_range(fn, vs)
  end
  local edges, counts = plot.histogram(vs, bins, lo, hi, opts.density)
  return add(self, {kind = "hist", edges = edges, counts = counts, label = opts.label,
    color = opt_color(fn, opts.color) or next_color(self), alpha = opts.alpha or 0.6})
end

--- ax:heatmap(data, {cmap, vmin, vmax, colorbar = true, colorbar_label, xlabels, ylabels, tick_every, annotate, fmt})
function Axes:heatmap(data, opts)
  local fn = "Axes:heatmap"
  opts = check_opts(fn, opts, set_of({"cmap", "vmin", "vmax", "colorbar", "colorbar_label", "xlabels", "ylabels",
    "tick_every", "annotate", "fmt"}))
  local t
  if av.is_tensor(data) then
    if data:dim() ~= 2 then fail(fn, "data must be a 2-d tensor or a table of rows, got a %d-d tensor", data:dim()) end
    t = data:double():contiguous()
  elseif type(data) == "table" then
    if #data == 0 then fail(fn, "data is empty") end
    local rows, w = {}, nil
    for i, r in ipairs(data) do
      rows[i] = numbers(fn, r, ("data[%d]"):format(i))
      if w and #rows[i] ~= w then fail(fn, "data rows have different lengths (%d and %d)", w, #rows[i]) end
      w = #rows[i]
    end
    t = av.tensor(rows, {dtype = "float64"})
  else
    fail(fn, "data must be a 2-d tensor or a table of rows, got %s", type(data))
  end
  if t:numel() == 0 then fail(fn, "data is empty") end
  local tab = cmap_table(opts.cmap or "viridis", fn)
  local vmin, vmax = opts.vmin, opts.vmax
  for k, v in pairs({vmin = vmin, vmax = vmax}) do
    if type(v) ~= "number" then fail(fn, "%s must be a number, got %s", k, type(v)) end
  end
  if vmin == nil or vmax == nil then
    local lo, hi = finite_range(t)
    vmin, vmax = vmin or lo, vmax or hi
  end
  if vmax < vmin then fail(fn, "vmax (%g) is below vmin (%g)", vmax, vmin) end
  local R, C = t:size(1), t:size(2)
  local xl = opts.xlabels and strings(fn, opts.xlabels, "xlabels")
  local yl = opts.ylabels and strings(fn, opts.ylabels, "ylabels")
  if xl and #xl ~= C then fail(fn, "xlabels has %d names for %d columns", #xl, C) end
  if yl and #yl ~= R then fail(fn, "ylabels has %d names for %d rows", #yl, R) end
  if opts.tick_every ~= nil then positive_int(fn, opts.tick_every, "tick_every") end
  local fmt = opts.fmt or "%d"
  if type(fmt) ~= "string" or not (pcall(string.format, fmt, 1) or pcall(string.format, fmt, 1.5)) then fail(fn, "fmt must be a format for one number, like '%%d' or '%%.2f'") end
  self.mode = "heatmap"
  return add(self, {kind = "heatmap", t = t, rows = R, cols = C, cmap = opts.cmap or "viridis", table = tab,
    vmin = vmin, vmax = vmax, colorbar = opts.colorbar ~= false, colorbar_label = opts.colorbar_label,
    xlabels = xl, ylabels = yl, tick_every = opts.tick_every, annotate = opts.annotate, fmt = fmt})
end

local function check_image(fn, img, what)
  if not av.is_tensor(img) then fail(fn, "%s must be an image tensor (3 x H x W uint8 or float in [0, 1]), got %s", what, type(img)) end
  local d = img:dim()
  if d == 2 then return img end
  if d ~= 3 or (img:size(1) ~= 1 and img:size(1) ~= 3) then
    local dims = {}
    for i = 1, d do dims[i] = img:size(i) end
    fail(fn, "%s must be C x H x W with C = 1 or 3, got %s", what, table.concat(dims, "x"))
  end
  return img
end
plot._check_image = check_image

--- ax:image(img, {title}) — aspect kept, no axes
function Axes:image(img, opts)
  local fn = "Axes:image"
  opts = check_opts(fn, opts, set_of({"title", "filter"}))
  check_image(fn, img, "img")
  self.mode = "image"
  if opts.title then self.opts.title = tostring(opts.title) end
  return add(self, {kind = "image", img = img, filter = opts.filter or "bilinear"})
end

local SET_OPTS = {"title", "xlabel", "ylabel", "xlim", "ylim", "legend", "grid", "xticks", "xticklabels", "yticks",
  "yticklabels", "xlog", "ylog"}
plot._SET_OPTS = SET_OPTS
local LEGEND_LOCS = {best = true, ["upper right"] = true, ["lower right"] = true, ["upper left"] = true,
  ["lower left"] = true, outside = true}

--- ax:set{title, xlabel, ylabel, xlim, ylim, legend, grid, xticks, xticklabels, yticks, yticklabels, xlog, ylog}
function Axes:set(opts)
  local fn = "Axes:set"
  opts = check_opts(fn, opts, set_of(SET_OPTS))
  for _, k in ipairs({"xlim", "ylim"}) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "table" or type(v[1]) ~= "number" or type(v[2]) ~= "number" or v[1] == v[2]) then
      fail(fn, "%s must be {a, b} with two different numbers", k)
    end
  end
  if opts.legend ~= nil and opts.legend ~= false and opts.legend ~= true and not LEGEND_LOCS[opts.legend] then
    fail(fn, "legend must be false or one of: %s; got '%s'", table.concat(sorted_keys(LEGEND_LOCS), ", "), tostring(opts.legend))
  end
  for _, k in ipairs({"xticks", "yticks"}) do
    if opts[k] ~= nil then opts[k] = numbers(fn, opts[k], k, true) end
  end
  for _, k in ipairs({"xticklabels", "yticklabels"}) do
    if opts[k] ~= nil then opts[k] = strings(fn, opts[k], k) end
  end
  for k, v in pairs(opts) do self.opts[k] = v end
  return self
end

-- ---- output ------------------------------------------------------------------

local render = require "aviary.plot.render"(plot)

function Figure:render()
  local S = P.new(self.width, self.height)
  render.figure(S, self)
  return S
end

--- fig:png() -> PNG bytes
function Figure:png()
  local S = self:render()
  local s = S:png()
  S:close()
  return s
end

--- fig:save(path) -> path (written atomically)
function Figure:save(path)
  if type(path) ~= "string" or path == "" then fail("Figure:save", "path must be a non-empty string, got %s", type(path)) end
  local S = self:render()
  local ok, err = pcall(S.save, S, path)
  S:close()
  if not ok then fail("Figure:save", "%s", (tostring(err):gsub("^PlotSurface:save: ", ""):gsub("^aviary%._plot: ", ""))) end
  return path
end

--- fig:axes_box(i = 1) -> {x, y, w, h}: the i-th panel's data area in pixels, as last rendered (nil before
-- the figure is saved or rendered); for a heat map, the cells' area (for hover maps in HTML)
function Figure:axes_box(i)
  local ax = self._axes[i or 1]
  local r = ax and ax._rect
  if not r then return nil end
  return {r[1], r[2], r[3], r[4]}
end

--- fig:tensor() -> uint8 3 x H x W
function Figure:tensor()
  local S = self:render()
  local t = S:tensor()
  S:close()
  return t
end

require "aviary.plot.quick"(plot)

return plot
