-- aviary.plot's layout and drawing: turns a Figure's recorded artists into
-- cairo calls on a PlotSurface (av._plot). Loaded by aviary.plot, which passes
-- itself in; not a public module.
local av = require "aviary"

return function(plot)
local R = {}

local SIZE = {title = 16, label = 13, tick = 11, legend = 12, figtitle = 17}
local TEXT = {0.13, 0.13, 0.13}
local SPINE = {0.25, 0.25, 0.25}
local GRID = {0.88, 0.88, 0.88}
R.SIZE = SIZE

-- ---- text ----------------------------------------------------------------------

local function font(S, size, bold) S:select_font(bold and true or false, size) end

local function text_width(S, s, size, bold)
  font(S, size, bold)
  local _, _, _, _, xa = S:text_extents(s)
  return xa
end
R.text_width = text_width

-- drops trailing UTF-8 continuation bytes and lead bytes left without their tail
local function utf8_cut(s, n)
  local t = s:sub(1, n)
  while #t > 0 do
    local b = t:byte(#t)
    if b >= 0x80 then t = t:sub(1, #t - 1) else break end
  end
  return t
end

--- s shortened with an ellipsis to fit maxw pixels
local function fit(S, s, maxw, size, bold)
  if text_width(S, s, size, bold) <= maxw then return s end
  local lo, hi = 0, #s
  while lo < hi do
    local mid = (lo + hi + 1) // 2
    if text_width(S, utf8_cut(s, mid) .. "…", size, bold) <= maxw then lo = mid else hi = mid - 1 end
  end
  return utf8_cut(s, lo) .. "…"
end
R.fit = fit

--- text at (x, y); o = {size, bold, color, halign = left|center|right, valign = baseline|top|middle|bottom, angle}
local function draw_text(S, s, x, y, o)
  local size = o.size or SIZE.tick
  font(S, size, o.bold)
  local _, _, _, _, xa = S:text_extents(s)
  local dx = (o.halign == "center" and -xa / 2) or (o.halign == "right" and -xa) or 0
  local va = o.valign
  local dy = (va == "middle" and 0.36 * size) or (va == "top" and 0.8 * size) or (va == "bottom" and -0.24 * size) or 0
  local c = o.color or TEXT
  S:save_state()
  S:translate(x, y)
  if o.angle then S:rotate(o.angle) end
  S:set_source_rgba(c[1], c[2], c[3], o.alpha or 1)
  S:move_to(dx, dy)
  S:show_text(s)
  S:new_path()
  S:restore()
end
R.draw_text = draw_text

local function set_color(S, c, a) S:set_source_rgba(c[1], c[2], c[3], a or 1) end
R.set_color = set_color

local function hline_px(S, x1, x2, y, c, w)
  w = w or 1
  local yy = math.floor(y) + (w % 2 == 1 and 0.5 or 0)
  set_color(S, c)
  S:set_line_width(w)
  S:set_dash(nil)
  S:move_to(x1, yy):line_to(x2, yy):stroke()
end

local function vline_px(S, x, y1, y2, c, w)
  w = w or 1
  local xx = math.floor(x) + (w % 2 == 1 and 0.5 or 0)
  set_color(S, c)
  S:set_line_width(w)
  S:set_dash(nil)
  S:move_to(xx, y1):line_to(xx, y2):stroke()
end

local function marker(S, kind, x, y, r)
  if kind == "s" then S:rectangle(x - r, y - r, 2 * r, 2 * r)
  elseif kind == "^" then S:move_to(x, y - r * 1.2):line_to(x + r * 1.1, y + r * 0.8):line_to(x - r * 1.1, y + r * 0.8):close_path()
  elseif kind == "d" then S:move_to(x, y - r * 1.3):line_to(x + r, y):line_to(x, y + r * 1.3):line_to(x - r, y):close_path()
  elseif kind == "." then S:move_to(x + r * 0.6, y):arc(x, y, r * 0.6, 0, 2 * math.pi)
  else S:move_to(x + r, y):arc(x, y, r, 0, 2 * math.pi) end
end

local function draw_marker(S, kind, x, y, r, c, a)
  set_color(S, c, a)
  if kind == "x" or kind == "+" then
    S:set_line_width(1.5)
    S:set_dash(nil)
    if kind == "x" then S:move_to(x - r, y - r):line_to(x + r, y + r):move_to(x - r, y + r):line_to(x + r, y - r)
    else S:move_to(x - r, y):line_to(x + r, y):move_to(x, y - r):line_to(x, y + r) end
    S:stroke()
  else
    marker(S, kind, x, y, r)
    S:fill()
  end
end

-- ---- limits and ticks ------------------------------------------------------------

local log10 = function(v) return math.log(v, 10) end

local function extend(lim, v)
  if v == v and v ~= math.huge and v ~= -math.huge then
    if v < lim[1] then lim[1] = v end
    if v > lim[2] then lim[2] = v end
  end
end

local function tick_set(lo, hi, logscale, npx, per)
  if logscale then
    local a, b = math.min(lo, hi), math.max(lo, hi)
    local t, t125 = {}, {}
    for k = math.floor(a) - 1, math.ceil(b) + 1 do
      for _, m in ipairs({1, 2, 5}) do
        local v = k + log10(m)
        if v >= a - 1e-9 and v <= b + 1e-9 then
          t125[#t125 + 1] = v
          if m == 1 then t[#t + 1] = v end
        end
      end
    end
    if #t < 3 then t = t125 end
    if #t < 3 then
      local ticks = plot.nice_ticks(10 ^ a, 10 ^ b, math.max(3, npx // per))
      t = {}
      for _, v in ipairs(ticks) do if v > 0 then t[#t + 1] = log10(v) end end
    end
    local labels = {}
    for i, v in ipairs(t) do labels[i] = ("%g"):format(tonumber(("%.6g"):format(10 ^ v))) end
    return t, labels
  end
  local ticks, step = plot.nice_ticks(math.min(lo, hi), math.max(lo, hi), math.max(2, npx // per))
  local f = plot.tick_format(step)
  local labels = {}
  for i, v in ipairs(ticks) do labels[i] = f(v) end
  return ticks, labels
end

-- ---- legend ----------------------------------------------------------------------

local function legend_entries(ax)
  local e = {}
  for _, a in ipairs(ax.artists) do
    if a.kind == "line" and a.label then
      e[#e + 1] = {label = tostring(a.label), kind = "line", color = a.color, dash = a.dash, width = a.width, marker = a.marker}
    elseif (a.kind == "hline" or a.kind == "vline") and a.label then
      e[#e + 1] = {label = tostring(a.label), kind = "line", color = a.color, dash = a.dash, width = a.width}
    elseif (a.kind == "bar") and a.label then
      e[#e + 1] = {label = tostring(a.label), kind = "patch", color = a.color}
    elseif a.kind == "hist" and a.label then
      e[#e + 1] = {label = tostring(a.label), kind = "patch", color = a.color, alpha = a.alpha}
    elseif a.kind == "grouped_bar" then
      for _, s in ipairs(a.series) do e[#e + 1] = {label = s.label, kind = "patch", color = s.color} end
    elseif a.kind == "scatter" then
      if a.groups and a.legend then
        for g = 1, a.ngroups do
          e[#e + 1] = {label = a.group_names and a.group_names[g] or tostring(g), kind = "marker", color = a.colors[g]}
        end
      elseif a.label then
        e[#e + 1] = {label = tostring(a.label), kind = "marker", color = a.color}
      end
    end
  end
  return e
end

local LROW, LSW = 17, 22

-- sizes the legend: returns {w, h, ncols, rows, labels, colw}
local function legend_layout(S, entries, maxh, maxw)
  local n = #entries
  local maxrows = math.max(1, (maxh - 12) // LROW)
  local ncols = math.ceil(n / maxrows)
  local rows = math.ceil(n / ncols)
  local labels, lw = {}, 0
  local cap = math.max(60, math.min(220, (maxw - 20) / ncols - LSW - 16))
  for i, en in ipairs(entries) do
    labels[i] = fit(S, en.label, cap, SIZE.legend)
    lw = math.max(lw, text_width(S, labels[i], SIZE.legend))
  end
  local colw = LSW + 6 + lw
  return {w = ncols * colw + (ncols - 1) * 12 + 16, h = rows * LROW + 10, ncols = ncols, rows = rows,
    labels = labels, colw = colw}
end

local function draw_legend(S, entries, L, x, y)
  S:rectangle(x + 0.5, y + 0.5, L.w - 1, L.h - 1)
  S:set_source_rgba(1, 1, 1, 0.88)
  S:fill_preserve()
  set_color(S, {0.8, 0.8, 0.8})
  S:set_line_width(1)
  S:set_dash(nil)
  S:stroke()
  for i, en in ipairs(entries) do
    local col, row = (i - 1) // L.rows, (i - 1) % L.rows
    local ex, ey = x + 8 + col * (L.colw + 12), y + 5 + row * LROW + LROW / 2
    if en.kind == "line" then
      set_color(S, en.color)
      S:set_line_width(math.min(en.width or 2, 3))
      S:set_dash(en.dash)
      S:move_to(ex, ey):line_to(ex + LSW, ey):stroke()
      S:set_dash(nil)
      if en.marker then draw_marker(S, en.marker, ex + LSW / 2, ey, 3.5, en.color) end
    elseif en.kind == "marker" then
      draw_marker(S, "o", ex + LSW / 2, ey, 4.5, en.color)
    else
      S:rectangle(ex + 2, ey - 5, LSW - 4, 10)
      set_color(S, en.color, en.alpha)
      S:fill()
    end
    draw_text(S, L.labels[i], ex + LSW + 6, ey, {size = SIZE.legend, valign = "middle"})
  end
end

local function place_legend(ax, L, loc, px, py, pw, ph)
  local m = 8
  local spots = {
    ["upper right"] = {px + pw - L.w - m, py + m}, ["upper left"] = {px + m, py + m},
    ["lower left"] = {px + m, py + ph - L.h - m}, ["lower right"] = {px + pw - L.w - m, py + ph - L.h - m},
    ["center right"] = {px + pw - L.w - m, py + (ph - L.h) / 2}, ["upper center"] = {px + (pw - L.w) / 2, py + m},
    ["lower center"] = {px + (pw - L.w) / 2, py + ph - L.h - m}, ["center left"] = {px + m, py + (ph - L.h) / 2},
  }
  if loc ~= "best" then return spots[loc][1], spots[loc][2] end
  local pts = ax._pts or {}
  local best, bx, by = math.huge, nil, nil
  for _, name in ipairs({"upper right", "upper left", "lower left", "lower right", "center right", "upper center",
    "lower center", "center left"}) do
    local s = spots[name]
    local x1, y1, x2, y2 = s[1] - 4, s[2] - 4, s[1] + L.w + 4, s[2] + L.h + 4
    local c = 0
    for i = 1, #pts, 2 do
      local x, y = pts[i], pts[i + 1]
      if x >= x1 and x <= x2 and y >= y1 and y <= y2 then c = c + 1 end
    end
    if c < best then best, bx, by = c, s[1], s[2] end
    if c == 0 then break end
  end
  return bx, by
end

-- ---- xy axes ---------------------------------------------------------------------

local function add_pt(ax, x, y)
  local p = ax._pts
  if #p < 60000 then p[#p + 1] = x; p[#p + 1] = y end
end

-- samples a rectangle's area for the legend placement
local function add_rect_pts(ax, x1, y1, x2, y2)
  if x2 < x1 then x1, x2 = x2, x1 end
  if y2 < y1 then y1, y2 = y2, y1 end
  local nx, ny = math.max(1, math.ceil((x2 - x1) / 12)), math.max(1, math.ceil((y2 - y1) / 12))
  for i = 0, nx do
    for j = 0, ny do add_pt(ax, x1 + (x2 - x1) * i / nx, y1 + (y2 - y1) * j / ny) end
  end
end

local function draw_xy(S, ax, X0, Y0, W, H)
  local o = ax.opts
  ax._pts = {}
  -- categories and data limits
  local cat, cat_horizontal
  local xl, yl = {math.huge, -math.huge}, {math.huge, -math.huge}
  local xzero, yzero = false, false
  for _, a in ipairs(ax.artists) do
    if a.kind == "line" or a.kind == "scatter" then
      for i = 1, #a.x do
        local x, y = a.x[i], a.y[i]
        if not (o.xlog and x <= 0) then extend(xl, o.xlog and log10(x) or x) end
        if not (o.ylog and y <= 0) then extend(yl, o.ylog and log10(y) or y) end
      end
    elseif a.kind == "bar" or a.kind == "grouped_bar" then
      if not cat then cat, cat_horizontal = a.labels, a.horizontal end
      local vl = a.horizontal and xl or yl
      if a.kind == "bar" then for _, v in ipairs(a.values) do extend(vl, v) end
      else for _, s in ipairs(a.series) do for _, v in ipairs(s.values) do extend(vl, v) end end end
      extend(vl, 0)
      if a.horizontal then xzero = true else yzero = true end
    elseif a.kind == "hist" then
      extend(xl, a.edges[1]); extend(xl, a.edges[#a.edges])
      for _, c in ipairs(a.counts) do extend(yl, c) end
      extend(yl, 0)
      yzero = true
    elseif a.kind == "hline" then
      if not (o.ylog and a.value <= 0) then extend(yl, o.ylog and log10(a.value) or a.value) end
    elseif a.kind == "vline" then
      if not (o.xlog and a.value <= 0) then extend(xl, o.xlog and log10(a.value) or a.value) end
    end
  end
  local function finish(lim, zero, user, logscale, is_cat)
    if is_cat then return {0.5, #cat + 0.5} end
    if user then
      return logscale and {log10(user[1]), log10(user[2])} or {user[1], user[2]}
    end
    if lim[1] > lim[2] then lim = {0, 1} end
    if lim[1] == lim[2] then
      local d = lim[1] == 0 and 1 or math.abs(lim[1]) * 0.1
      lim = {lim[1] - d, lim[2] + d}
    end
    local pad = (lim[2] - lim[1]) * 0.05
    if zero and lim[1] >= 0 then return {0, lim[2] + pad} end
    if zero and lim[2] <= 0 then return {lim[1] - pad, 0} end
    return {lim[1] - pad, lim[2] + pad}
  end
  local xcat, ycat = cat and not cat_horizontal, cat and cat_horizontal
  local xlim = finish(xl, xzero, o.xlim, o.xlog, xcat)
  local ylim = finish(yl, yzero, o.ylim, o.ylog, ycat)
  if ycat then ylim = {ylim[2], ylim[1]} end -- first category at the top

  -- legend entries (to reserve room when outside)
  local entries = legend_entries(ax)
  local loc = o.legend
  if loc == nil or loc == true then loc = "best" end
  if #entries == 0 then loc = false end

  -- margins
  local top = 10 + (o.title and SIZE.title + 12 or 0)
  local right = 18
  local L
  if loc == "outside" then
    L = legend_layout(S, entries, H - top - 20, W * 0.4)
    right = right + L.w
  end
  local left = 10 + (o.ylabel and SIZE.label + 8 or 0)
  local bottom = 8 + (o.xlabel and SIZE.label + 10 or 0)
  -- y ticks (from an estimate of the plot height)
  local yt, ytl
  local est_h = H - top - bottom - 30
  if ycat then
    yt, ytl = {}, {}
    local maxw = W * 0.35
    local step = math.max(1, math.ceil(15 / math.max(1e-9, est_h / #cat)))
    for i = 1, #cat, step do yt[#yt + 1] = i; ytl[#ytl + 1] = fit(S, cat[i], maxw, SIZE.tick) end
  elseif o.yticks then
    yt = {}
    for i, v in ipairs(o.yticks) do yt[i] = o.ylog and log10(v) or v end
    ytl = o.yticklabels or {}
    if not o.yticklabels then for i, v in ipairs(o.yticks) do ytl[i] = ("%g"):format(v) end end
  else
    yt, ytl = tick_set(ylim[1], ylim[2], o.ylog, est_h, 50)
  end
  local ytw = 0
  for _, s in ipairs(ytl) do ytw = math.max(ytw, text_width(S, s, SIZE.tick)) end
  left = left + ytw + 8
  -- x ticks
  local pw_est = W - left - right
  local xt, xtl, xangle
  if xcat then
    local spacing = pw_est / #cat
    local maxw = 0
    local cap = math.min(160, H * 0.3)
    local labels = {}
    for i = 1, #cat do
      labels[i] = fit(S, cat[i], cap, SIZE.tick)
      maxw = math.max(maxw, text_width(S, labels[i], SIZE.tick))
    end
    xt, xtl = {}, {}
    local step
    if maxw <= spacing * 0.9 then
      step = 1
    else
      xangle = #cat <= 30 and math.rad(45) or math.rad(90)
      step = math.max(1, math.ceil((xangle > 1 and 14 or 19) / spacing))
    end
    for i = 1, #cat, step do xt[#xt + 1] = i; xtl[#xtl + 1] = labels[i] end
    if xangle then
      bottom = bottom + maxw * math.sin(xangle) + SIZE.tick * math.cos(xangle) + 10
    else
      bottom = bottom + SIZE.tick + 10
    end
  else
    if o.xticks then
      xt = {}
      for i, v in ipairs(o.xticks) do xt[i] = o.xlog and log10(v) or v end
      xtl = o.xticklabels or {}
      if not o.xticklabels then for i, v in ipairs(o.xticks) do xtl[i] = ("%g"):format(v) end end
    else
      xt, xtl = tick_set(xlim[1], xlim[2], o.xlog, pw_est, 90)
    end
    bottom = bottom + SIZE.tick + 10
  end
  local px, py = X0 + left, Y0 + top
  local pw, ph = math.max(10, W - left - right), math.max(10, H - top - bottom)
  local function X(v) return px + (v - xlim[1]) / (xlim[2] - xlim[1]) * pw end
  local function Y(v) return py + ph - (v - ylim[1]) / (ylim[2] - ylim[1]) * ph end
  local function XD(v) if o.xlog then return v > 0 and X(log10(v)) or nil end return X(v) end
  local function YD(v) if o.ylog then return v > 0 and Y(log10(v)) or nil end return Y(v) end

  -- grid
  if o.grid ~= false then
    if not xcat then
      for _, v in ipairs(xt) do local x = X(v) if x >= px - 0.5 and x <= px + pw + 0.5 then vline_px(S, x, py, py + ph, GRID) end end
    end
    if not ycat then
      for _, v in ipairs(yt) do local y = Y(v) if y >= py - 0.5 and y <= py + ph + 0.5 then hline_px(S, px, px + pw, y, GRID) end end
    end
  end

  -- artists, clipped to the plot area
  S:save_state()
  S:rectangle(px - 1, py - 1, pw + 2, ph + 2):clip()
  S:set_line_join("round")
  for _, a in ipairs(ax.artists) do
    if a.kind == "line" then
      set_color(S, a.color, a.alpha)
      S:set_line_width(a.width)
      S:set_dash(a.dash)
      local pen, lx, ly = false, nil, nil
      for i = 1, #a.x do
        local x, y = XD(a.x[i]), YD(a.y[i])
        if x and y and x == x and y == y then
          if pen then S:line_to(x, y) else S:move_to(x, y) end
          if lx then
            local n = math.min(200, math.max(1, math.floor(math.sqrt((x - lx) ^ 2 + (y - ly) ^ 2) / 6)))
            for k = 1, n do add_pt(ax, lx + (x - lx) * k / n, ly + (y - ly) * k / n) end
          else add_pt(ax, x, y) end
          pen, lx, ly = true, x, y
        else
          pen, lx, ly = false, nil, nil
        end
      end
      S:stroke()
      S:set_dash(nil)
      if a.marker then
        for i = 1, #a.x do
          local x, y = XD(a.x[i]), YD(a.y[i])
          if x and y and x == x and y == y then draw_marker(S, a.marker, x, y, a.marker_size, a.color, a.alpha) end
        end
      end
    elseif a.kind == "scatter" then
      local r = a.size
      if a.groups then
        for g = 1, a.ngroups do
          set_color(S, a.colors[g], a.alpha)
          local any = false
          for i = 1, #a.x do
            if a.groups[i] == g then
              local x, y = XD(a.x[i]), YD(a.y[i])
              if x and y and x == x and y == y then
                S:move_to(x + r, y):arc(x, y, r, 0, 2 * math.pi)
                add_pt(ax, x, y)
                any = true
              end
            end
          end
          if any then S:fill() end
        end
      else
        set_color(S, a.color, a.alpha)
        for i = 1, #a.x do
          local x, y = XD(a.x[i]), YD(a.y[i])
          if x and y and x == x and y == y then
            S:move_to(x + r, y):arc(x, y, r, 0, 2 * math.pi)
            add_pt(ax, x, y)
          end
        end
        S:fill()
      end
    elseif a.kind == "bar" or a.kind == "grouped_bar" then
      local series = a.kind == "bar" and {{values = a.values, color = a.color, colors = a.colors}} or a.series
      local m = #series
      local bw = a.width / m
      for si, s in ipairs(series) do
        for i, v in ipairs(s.values) do
          local c0 = i - a.width / 2 + (si - 1) * bw
          local c = s.colors and s.colors[i] or s.color
          local x1, x2, y1, y2
          if a.horizontal then
            y1, y2 = Y(c0), Y(c0 + bw)
            x1, x2 = XD(0) or px, XD(v) or px
          else
            x1, x2 = X(c0), X(c0 + bw)
            y1, y2 = YD(0) or py + ph, YD(v) or py + ph
          end
          if math.abs((a.horizontal and y2 - y1) or (x2 - x1)) >= 2.5 then
            x1, x2, y1, y2 = math.floor(x1 + 0.5), math.floor(x2 + 0.5), math.floor(y1 + 0.5), math.floor(y2 + 0.5)
          end
          S:rectangle(math.min(x1, x2), math.min(y1, y2), math.abs(x2 - x1), math.abs(y2 - y1))
          set_color(S, c)
          S:fill()
          add_rect_pts(ax, x1, y1, x2, y2)
        end
      end
    elseif a.kind == "hist" then
      local ybase = YD(0) or py + ph
      set_color(S, a.color, a.alpha)
      for i, c in ipairs(a.counts) do
        local x1, x2, y = X(a.edges[i]), X(a.edges[i + 1]), YD(c) or ybase
        if c > 0 then
          S:rectangle(x1, y, x2 - x1, ybase - y)
          add_rect_pts(ax, x1, y, x2, ybase)
        end
      end
      S:fill()
      set_color(S, a.color)
      S:set_line_width(1.2)
      S:move_to(X(a.edges[1]), ybase)
      for i, c in ipairs(a.counts) do
        local y = YD(c) or ybase
        S:line_to(X(a.edges[i]), y):line_to(X(a.edges[i + 1]), y)
      end
      S:line_to(X(a.edges[#a.edges]), ybase):stroke()
    elseif a.kind == "hline" or a.kind == "vline" then
      set_color(S, a.color)
      S:set_line_width(a.width)
      S:set_dash(a.dash)
      if a.kind == "hline" then
        local y = YD(a.value)
        if y then S:move_to(px, y):line_to(px + pw, y):stroke(); for k = 0, 40 do add_pt(ax, px + pw * k / 40, y) end end
      else
        local x = XD(a.value)
        if x then S:move_to(x, py):line_to(x, py + ph):stroke(); for k = 0, 40 do add_pt(ax, x, py + ph * k / 40) end end
      end
      S:set_dash(nil)
    end
  end
  S:restore()

  -- spines, ticks, labels
  vline_px(S, px - 1, py, py + ph + 1, SPINE)
  hline_px(S, px - 1, px + pw, py + ph, SPINE)
  for i, v in ipairs(yt) do
    local y = Y(v)
    if y >= py - 0.5 and y <= py + ph + 0.5 then
      hline_px(S, px - 5, px - 1, y, SPINE)
      draw_text(S, ytl[i] or "", px - 8, y, {size = SIZE.tick, halign = "right", valign = "middle"})
    end
  end
  for i, v in ipairs(xt) do
    local x = X(v)
    if x >= px - 0.5 and x <= px + pw + 0.5 then
      vline_px(S, x, py + ph, py + ph + 5, SPINE)
      if xangle then
        draw_text(S, xtl[i] or "", x + SIZE.tick * 0.3, py + ph + 8, {size = SIZE.tick, halign = "right", valign = "middle",
          angle = -xangle})
      else
        draw_text(S, xtl[i] or "", x, py + ph + 8, {size = SIZE.tick, halign = "center", valign = "top"})
      end
    end
  end
  if o.title then
    draw_text(S, fit(S, tostring(o.title), W - 20, SIZE.title, true), px + pw / 2, Y0 + 10, {size = SIZE.title, bold = true,
      halign = "center", valign = "top"})
  end
  if o.xlabel then
    draw_text(S, fit(S, tostring(o.xlabel), pw, SIZE.label), px + pw / 2, Y0 + H - 8, {size = SIZE.label, halign = "center",
      valign = "bottom"})
  end
  if o.ylabel then
    draw_text(S, fit(S, tostring(o.ylabel), ph, SIZE.label), X0 + 8, py + ph / 2, {size = SIZE.label, halign = "center",
      valign = "top", angle = -math.pi / 2})
  end

  if loc then
    if loc == "outside" then
      draw_legend(S, entries, L, px + pw + 14, py)
      ax._legend = {px + pw + 14, py, L.w, L.h}
    else
      L = legend_layout(S, entries, ph, pw)
      local lx, ly = place_legend(ax, L, loc, px, py, pw, ph)
      draw_legend(S, entries, L, lx, ly)
      ax._legend = {lx, ly, L.w, L.h}
    end
  end
  ax._rect = {px, py, pw, ph}
  ax._X, ax._Y = X, Y
end

-- ---- heatmap ---------------------------------------------------------------------

local function index_ticks(n, every, maxticks)
  local s = every
  if not s then
    s = 1
    local limit = math.max(2, math.min(15, maxticks or 15))
    for _, c in ipairs({1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 50000}) do
      s = c
      if n / c <= limit then break end
    end
  end
  local t = {}
  if s == 1 then for i = 1, n do t[#t + 1] = i end return t end
  t[1] = 1
  for k = s, n, s do if k - t[#t] >= s * 0.5 then t[#t + 1] = k end end
  return t
end

local function draw_heatmap(S, ax, X0, Y0, W, H)
  local o, a = ax.opts, nil
  for _, x in ipairs(ax.artists) do if x.kind == "heatmap" then a = x end end
  local Rn, Cn = a.rows, a.cols
  local top = 10 + (o.title and SIZE.title + 12 or 0)
  local bottom = 10 + (o.xlabel and SIZE.label + 10 or 0)
  local left = 10 + (o.ylabel and SIZE.label + 8 or 0)
  local right = 14
  -- colour bar ticks
  local cticks, clabels
  if a.colorbar then
    cticks, clabels = tick_set(a.vmin, a.vmax, false, math.max(165, H - top - bottom - 40), 55)
    if a.vmin == a.vmax then cticks, clabels = {a.vmin}, {("%g"):format(a.vmin)} end
    local cw = 0
    for _, s in ipairs(clabels) do cw = math.max(cw, text_width(S, s, SIZE.tick)) end
    right = right + 12 + 16 + 8 + cw + (a.colorbar_label and SIZE.label + 10 or 0)
  end
  -- y tick labels
  local ynames = a.ylabels and Rn <= 30
  local xnames = a.xlabels and Cn <= 30
  local est = math.min(W - left - right - 40, H - top - bottom - 30)
  local yt = ynames and index_ticks(Rn, 1) or index_ticks(Rn, a.tick_every, est * math.min(1, Rn / Cn) / 16)
  local xt = xnames and index_ticks(Cn, 1) or index_ticks(Cn, a.tick_every, est * math.min(1, Cn / Rn) / (8 * #tostring(Cn) + 10))
  local ytl, xtl = {}, {}
  local ytw, xtw = 0, 0
  for i, r in ipairs(yt) do
    ytl[i] = ynames and fit(S, a.ylabels[r], math.min(160, W * 0.3), SIZE.tick) or tostring(r)
    ytw = math.max(ytw, text_width(S, ytl[i], SIZE.tick))
  end
  for i, c in ipairs(xt) do
    xtl[i] = xnames and fit(S, a.xlabels[c], math.min(160, H * 0.3), SIZE.tick) or tostring(c)
    xtw = math.max(xtw, text_width(S, xtl[i], SIZE.tick))
  end
  left = left + ytw + 8
  local xangle
  if xnames then
    xangle = xtw <= 70 and math.rad(45) or math.rad(90)
    bottom = bottom + xtw * math.sin(xangle) + SIZE.tick * math.cos(xangle) + 12
  else
    bottom = bottom + SIZE.tick + 12
  end
  local aw, ah = math.max(4, W - left - right), math.max(4, H - top - bottom)
  local cell = math.min(aw / Cn, ah / Rn)
  local hw, hh = cell * Cn, cell * Rn
  local hx = X0 + left + (aw - hw) / 2
  local hy = Y0 + top + (ah - hh) / 2
  local img = plot.apply_colormap(a.t, a.cmap, {vmin = a.vmin, vmax = a.vmax})
  S:paint_image(img, hx, hy, hw, hh, "nearest")
  S:rectangle(hx - 0.5, hy - 0.5, hw + 1, hh + 1)
  set_color(S, SPINE)
  S:set_line_width(1)
  S:set_dash(nil)
  S:stroke()
  -- annotations
  if a.annotate and cell >= 12 then
    local cmap = plot.colormap(a.cmap)
    local size = math.min(12, cell * 0.42)
    local rows = a.t:tolist()
    local span = a.vmax > a.vmin and a.vmax - a.vmin or 1
    local intfmt = a.fmt:find("%%[%-+ #0]*%d*[dic]")
    for r = 1, Rn do
      for c = 1, Cn do
        local v = rows[r][c]
        if v == v then
          local cr, cg, cb = cmap((v - a.vmin) / span)
          local lum = 0.299 * cr + 0.587 * cg + 0.114 * cb
          local s = intfmt and a.fmt:format(math.floor(v + 0.5)) or a.fmt:format(v)
          s = fit(S, s, cell - 2, size)
          draw_text(S, s, hx + (c - 0.5) * cell, hy + (r - 0.5) * cell, {size = size, halign = "center", valign = "middle",
            color = lum > 0.5 and {0, 0, 0} or {1, 1, 1}})
        end
      end
    end
  end
  -- ticks
  for i, r in ipairs(yt) do
    local y = hy + (r - 0.5) * cell
    hline_px(S, hx - 5, hx - 1, y, SPINE)
    draw_text(S, ytl[i], hx - 8, y, {size = SIZE.tick, halign = "right", valign = "middle"})
  end
  for i, c in ipairs(xt) do
    local x = hx + (c - 0.5) * cell
    vline_px(S, x, hy + hh, hy + hh + 5, SPINE)
    if xangle then
      draw_text(S, xtl[i], x + SIZE.tick * 0.3, hy + hh + 8, {size = SIZE.tick, halign = "right", valign = "middle", angle = -xangle})
    else
      draw_text(S, xtl[i], x, hy + hh + 8, {size = SIZE.tick, halign = "center", valign = "top"})
    end
  end
  -- colour bar
  if a.colorbar then
    local bx, by, bw, bh = math.floor(hx + hw + 14), math.floor(hy), 16, math.floor(hh)
    if bh < 40 then by, bh = math.floor(Y0 + top), math.floor(ah) end
    local ramp = av.linspace(a.vmax, a.vmin, 256):view(256, 1)
    S:paint_image(plot.apply_colormap(ramp, a.cmap, {vmin = a.vmin, vmax = a.vmax}), bx, by, bw, bh, "bilinear")
    S:rectangle(bx - 0.5, by - 0.5, bw + 1, bh + 1)
    set_color(S, SPINE)
    S:set_line_width(1)
    S:stroke()
    local span = a.vmax > a.vmin and a.vmax - a.vmin or 1
    local lw = 0
    for i, v in ipairs(cticks) do
      local y = by + bh - (v - a.vmin) / span * bh
      if a.vmax == a.vmin then y = by + bh / 2 end
      hline_px(S, bx + bw, bx + bw + 4, y, SPINE)
      draw_text(S, clabels[i], bx + bw + 7, y, {size = SIZE.tick, valign = "middle"})
      lw = math.max(lw, text_width(S, clabels[i], SIZE.tick))
    end
    if a.colorbar_label then
      draw_text(S, fit(S, tostring(a.colorbar_label), bh, SIZE.label), bx + bw + 12 + lw, by + bh / 2,
        {size = SIZE.label, halign = "center", valign = "top", angle = -math.pi / 2})
    end
  end
  if o.title then
    draw_text(S, fit(S, tostring(o.title), W - 20, SIZE.title, true), hx + hw / 2, Y0 + 10, {size = SIZE.title, bold = true,
      halign = "center", valign = "top"})
  end
  if o.xlabel then
    local ext = xangle and (xtw * math.sin(xangle) + SIZE.tick * math.cos(xangle) + 4) or SIZE.tick + 4
    draw_text(S, fit(S, tostring(o.xlabel), hw, SIZE.label), hx + hw / 2, math.min(Y0 + H - 8 - SIZE.label, hy + hh + 10 + ext),
      {size = SIZE.label, halign = "center", valign = "top"})
  end
  if o.ylabel then
    draw_text(S, fit(S, tostring(o.ylabel), hh, SIZE.label), math.max(X0 + 8, hx - ytw - 16 - SIZE.label - 6), hy + hh / 2,
      {size = SIZE.label, halign = "center", valign = "top", angle = -math.pi / 2})
  end
  ax._rect = {hx, hy, hw, hh}
  ax._cell = cell
end

-- ---- images ----------------------------------------------------------------------

--- fits an image into a box keeping its aspect; returns x, y, w, h
local function fit_box(ih, iw, x, y, w, h)
  local s = math.min(w / iw, h / ih)
  local dw, dh = iw * s, ih * s
  return x + (w - dw) / 2, y + (h - dh) / 2, dw, dh
end
R.fit_box = fit_box

local function image_hw(img)
  if img:dim() == 2 then return img:size(1), img:size(2) end
  return img:size(2), img:size(3)
end
R.image_hw = image_hw

local function draw_image_axes(S, ax, X0, Y0, W, H)
  local o = ax.opts
  local top = 6 + (o.title and SIZE.title + 10 or 0)
  local a
  for _, x in ipairs(ax.artists) do if x.kind == "image" then a = x end end
  local ih, iw = image_hw(a.img)
  local x, y, w, h = fit_box(ih, iw, X0 + 6, Y0 + top, W - 12, H - top - 6)
  S:paint_image(a.img, x, y, w, h, a.filter)
  if o.title then
    draw_text(S, fit(S, tostring(o.title), W - 12, SIZE.title, true), X0 + W / 2, Y0 + 8, {size = SIZE.title, bold = true,
      halign = "center", valign = "top"})
  end
  ax._rect = {x, y, w, h}
end

-- ---- figure ----------------------------------------------------------------------

function R.figure(S, fig)
  S:set_source_rgba(1, 1, 1, 1)
  S:paint()
  if fig._draw then return fig._draw(S, fig, R) end
  local top = 0
  if fig.title then
    draw_text(S, fit(S, fig.title, fig.width - 20, SIZE.figtitle, true), fig.width / 2, 10, {size = SIZE.figtitle, bold = true,
      halign = "center", valign = "top"})
    top = SIZE.figtitle + 16
  end
  local cw, ch = fig.width / fig.cols, (fig.height - top) / fig.rows
  for i = 1, fig.rows * fig.cols do
    local ax = fig._axes[i]
    if ax then
      local r, c = (i - 1) // fig.cols, (i - 1) % fig.cols
      local x, y = math.floor(c * cw), math.floor(top + r * ch)
      local w, h = math.floor((c + 1) * cw) - x, math.floor(top + (r + 1) * ch) - y
      if ax.mode == "heatmap" then draw_heatmap(S, ax, x, y, w, h)
      elseif ax.mode == "image" then draw_image_axes(S, ax, x, y, w, h)
      else draw_xy(S, ax, x, y, w, h) end
    end
  end
end

return R
end
