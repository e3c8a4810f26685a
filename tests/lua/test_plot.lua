-- aviary.plot: every plot kind renders to a PNG of the requested size; pixel
-- checks of the data -> pixel mapping (lines, bars, heatmap cells, colour bar,
-- titles, captions); colormaps against matplotlib's values; atomic saving;
-- clear errors on bad input.
local av = require "aviary"
local plot = require "aviary.plot"
local image = require "aviary.image"

-- pixel reader over a uint8 3 x H x W tensor: get(x, y) with 0-based pixel coordinates
local function pixels(t)
  local l = t:tolist()
  local R, G, B = l[1], l[2], l[3]
  local H, W = t:size(2), t:size(3)
  return function(x, y)
    x, y = math.floor(x), math.floor(y)
    if x < 0 or y < 0 or x >= W or y >= H then return nil end
    return R[y + 1][x + 1], G[y + 1][x + 1], B[y + 1][x + 1]
  end, W, H
end

local function is_red(r, g, b) return r and r > 180 and g < 90 and b < 90 end
local function is_blue(r, g, b) return r and b > 200 and r < 60 and g < 60 end

local function decoded_size(fig)
  local img = image.decode(fig:png())
  return img:size(1), img:size(2), img:size(3)
end

local function sizes_ok(fig, w, h)
  local c, hh, ww = decoded_size(fig)
  assert.equal(c, 3)
  assert.equal(hh, h)
  assert.equal(ww, w)
end

describe("plot kinds", function()
  it("line, bar, grouped bar, hline/vline, scatter, hist render at the requested size", function()
    local fig = plot.figure{width = 640, height = 420, rows = 2, cols = 3, title = "all"}
    fig:axes(1):line({1, 2, 3}, {3, 1, 2}, {label = "a", marker = "o"}):line(nil, {1, 2, 2}, {label = "b", dash = true})
    fig:axes(2):bar({"x", "y", "z"}, {3, 5, 2}, {label = "n"}):hline(2.5, {label = "ref"})
    fig:axes(3):grouped_bar({"p", "q"}, {{label = "s1", values = {1, 2}}, {label = "s2", values = {2, 1}}}, {horizontal = true})
    fig:axes(4):scatter(av.randn(100), av.randn(100), {groups = av.randint(1, 4, {100}):add(0):tolist()})
    fig:axes(5):hist(av.randn(500), {bins = 20, density = true, label = "h"}):vline(0)
    fig:axes(6):line({1, 10, 100}, {1, 100, 10000}):set{xlog = true, ylog = true, legend = false, grid = false}
    sizes_ok(fig, 640, 420)
  end)

  it("one-call conveniences render", function()
    sizes_ok(plot.lines{series = {{x = {1, 2, 3}, y = {1, 4, 9}, label = "sq"}}, width = 300, height = 200, title = "t"}, 300, 200)
    sizes_ok(plot.bars{labels = {"a", "b", "c"}, values = {1, 3, 2}, sort = "desc", top = 2, ref = {value = 2, label = "m"},
      width = 320, height = 240}, 320, 240)
    sizes_ok(plot.bars{labels = {"a", "b"}, values = {1, 3}, horizontal = true, ref = {value = 2}, width = 250, height = 150}, 250, 150)
    sizes_ok(plot.grouped_bars{categories = {"a", "b"}, series = {{label = "x", values = {1, 2}}}, width = 300, height = 200}, 300, 200)
    sizes_ok(plot.heatmap{data = {{1, 2}, {3, 4}}, annotate = true, width = 200, height = 200}, 200, 200)
    sizes_ok(plot.scatter{x = {1, 2, 3}, y = {3, 2, 1}, groups = {1, 2, 2}, group_names = {"u", "v"}, width = 300, height = 300}, 300, 300)
    sizes_ok(plot.hist{series = {{values = {1, 2, 2, 3}, label = "a"}, {values = {2, 3, 3, 4}, label = "b"}}, bins = 4,
      width = 300, height = 200}, 300, 200)
    local fig = plot.figure{width = 200, height = 150}
    fig:axes():image(av.rand(3, 40, 80), {title = "img"})
    sizes_ok(fig, 200, 150)
    local imgs = {av.rand(3, 20, 30):mul(255):to("uint8"), av.rand(1, 30, 20):mul(255):to("uint8")}
    sizes_ok(plot.collage{images = imgs, x = {0, 1}, y = {0, 1}, width = 300, height = 200, thumb = 30, border_colors = {"red", "green"}},
      300, 200)
  end)

  it("renders a 200 x 200 heatmap from a uint8 tensor quickly", function()
    local t0 = os.clock()
    local fig = plot.heatmap{data = av.randint(0, 50, {200, 200}):to("uint8"), title = "cm"}
    local img = image.decode(fig:png())
    assert.equal(img:size(3), 760)
    assert.truthy(os.clock() - t0 < 3, "heatmap took too long")
  end)
end)

describe("pixel checks", function()
  it("a red line from (0, 0) to (1, 1) follows the data -> pixel mapping", function()
    local fig = plot.figure{width = 400, height = 300}
    local ax = fig:axes()
    ax:line({0, 1}, {0, 1}, {color = "#ff0000", width = 3})
    ax:set{xlim = {0, 1}, ylim = {0, 1}, grid = false}
    local get, W, H = pixels(fig:tensor())
    local px, py, pw, ph = table.unpack(ax._rect)
    -- on the diagonal
    for _, f in ipairs({0.1, 0.3, 0.5, 0.7, 0.9}) do
      local x, y = px + f * pw, py + (1 - f) * ph
      assert.truthy(is_red(get(x, y)), ("no red pixel at the data point (%g, %g)"):format(f, f))
    end
    -- none in the opposite corners (top-left and bottom-right of the plot area)
    for x = math.floor(px + 5), math.floor(px + pw * 0.3) do
      for y = math.floor(py + 5), math.floor(py + ph * 0.3) do
        assert.falsy(is_red(get(x, y)), ("red pixel in the top-left corner at %d, %d"):format(x, y))
      end
    end
    for x = math.floor(px + pw * 0.7), math.floor(px + pw - 5) do
      for y = math.floor(py + ph * 0.7), math.floor(py + ph - 5) do
        assert.falsy(is_red(get(x, y)), ("red pixel in the bottom-right corner at %d, %d"):format(x, y))
      end
    end
    -- every red pixel lies near the diagonal
    for x = 0, W - 1, 3 do
      for y = 0, H - 1, 3 do
        if is_red(get(x, y)) then
          local fx, fy = (x + 0.5 - px) / pw, 1 - (y + 0.5 - py) / ph
          assert.truthy(math.abs(fx - fy) * math.min(pw, ph) < 6, ("red pixel off the line at %d, %d"):format(x, y))
        end
      end
    end
  end)

  it("bar heights are proportional to the values", function()
    local fig = plot.bars{labels = {"a", "b", "c"}, values = {1, 2, 4}, color = "#0000ff", grid = false, width = 400, height = 300}
    local get, W, H = pixels(fig:tensor())
    local runs, cur = {}, nil
    for x = 0, W - 1 do
      local n = 0
      for y = 0, H - 1 do if is_blue(get(x, y)) then n = n + 1 end end
      if n > 0 then
        if not cur then cur = {max = 0}; runs[#runs + 1] = cur end
        cur.max = math.max(cur.max, n)
      else
        cur = nil
      end
    end
    assert.equal(#runs, 3, "expected three bars")
    assert.near(runs[2].max / runs[1].max, 2, 0.05)
    assert.near(runs[3].max / runs[1].max, 4, 0.1)
  end)

  it("heatmap cells have the colormap's colour at their value, with a colour bar", function()
    local data = {{0, 0.25, 0.5}, {0.75, 1, 0.1}}
    local fig = plot.figure{width = 500, height = 360}
    local ax = fig:axes()
    ax:heatmap(data, {cmap = "viridis", vmin = 0, vmax = 1, annotate = false})
    local get = pixels(fig:tensor())
    local hx, hy, hw, hh = table.unpack(ax._rect)
    local cell = ax._cell
    local cm = plot.colormap("viridis")
    for r = 1, 2 do
      for c = 1, 3 do
        local er, eg, eb = cm(data[r][c])
        local pr, pg, pb = get(hx + (c - 0.5) * cell, hy + (r - 0.5) * cell)
        assert.near(pr, er * 255, 2.5, ("cell %d,%d red"):format(r, c))
        assert.near(pg, eg * 255, 2.5, ("cell %d,%d green"):format(r, c))
        assert.near(pb, eb * 255, 2.5, ("cell %d,%d blue"):format(r, c))
      end
    end
    -- colour bar right of the cells: vmax colour at the top, vmin colour at the bottom
    local bx = math.floor(hx + hw + 14) + 8
    local tr, tg, tb = cm(1)
    local br, bg, bb = cm(0)
    local r1, g1, b1 = get(bx, hy + 3)
    local r2, g2, b2 = get(bx, hy + hh - 3)
    assert.near(r1, tr * 255, 12); assert.near(g1, tg * 255, 12); assert.near(b1, tb * 255, 12)
    assert.near(r2, br * 255, 12); assert.near(g2, bg * 255, 12); assert.near(b2, bb * 255, 12)
    -- without a colour bar that column is background
    local fig2 = plot.figure{width = 700, height = 360}
    local ax2 = fig2:axes()
    ax2:heatmap(data, {vmin = 0, vmax = 1, colorbar = false})
    local get2 = pixels(fig2:tensor())
    local x2 = ax2._rect[1] + ax2._rect[3] + 22
    assert.same({get2(x2, ax2._rect[2] + 3)}, {255, 255, 255})
  end)

  it("the title region has dark text pixels", function()
    local function dark_in_top(title)
      local fig = plot.lines{series = {{y = {1, 2}}}, title = title, width = 400, height = 300}
      local get, W = pixels(fig:tensor())
      local n = 0
      for y = 0, 28 do
        for x = W // 4, 3 * W // 4 do
          local r, g, b = get(x, y)
          if r + g + b < 200 then n = n + 1 end
        end
      end
      return n
    end
    assert.truthy(dark_in_top("A title") > 30, "no dark pixels where the title is")
    assert.equal(dark_in_top(nil), 0)
  end)

  it("the 'best' legend avoids the data; 'outside' is right of the plot", function()
    for _, dir in ipairs({{0, 1}, {1, 0}}) do
      local fig = plot.figure{width = 400, height = 300}
      local ax = fig:axes()
      ax:line({0, 0.5, 1}, {dir[1], 0.5, dir[2]}, {label = "diagonal"})
      ax:line({0, 1}, {0.92, 0.92}, {label = "upper"})
      fig:tensor()
      local lx, ly, lw, lh = table.unpack(ax._legend)
      local px, py, pw, ph = table.unpack(ax._rect)
      -- the legend is in the corner the lines leave empty: lower right for a rising diagonal, lower left otherwise
      assert.truthy(ly > py + ph / 2, "legend not in the lower half")
      if dir[1] == 0 then assert.truthy(lx > px + pw / 2) else assert.truthy(lx + lw < px + pw / 2) end
    end
    local fig = plot.figure{width = 500, height = 300}
    local ax = fig:axes()
    ax:line({1, 2}, {1, 2}, {label = "a"}):set{legend = "outside"}
    fig:tensor()
    assert.truthy(ax._legend[1] > ax._rect[1] + ax._rect[3])
  end)

  it("NaN values leave gaps and heatmap cells white", function()
    local fig = plot.figure{width = 300, height = 200}
    fig:axes():line({1, 2, 3, 4}, {1, 0 / 0, 2, 3})
    sizes_ok(fig, 300, 200)
    local f2 = plot.figure{width = 400, height = 300}
    local ax = f2:axes()
    ax:heatmap({{1, 0 / 0}, {2, 3}}, {colorbar = false})
    local get = pixels(f2:tensor())
    local hx, hy, _, _ = table.unpack(ax._rect)
    assert.same({get(hx + 1.5 * ax._cell, hy + 0.5 * ax._cell)}, {255, 255, 255})
  end)

  it("image_grid captions take their colours", function()
    local imgs = {}
    for i = 1, 2 do imgs[i] = av.full({3, 32, 32}, 128):to("uint8") end
    local fig = plot.image_grid{images = imgs, captions = {"right", "wrong"}, caption_colors = {"green", "red"}, cell = 100, cols = 2}
    local get, W, H = pixels(fig:tensor())
    local function count(x0, x1, pred)
      local n = 0
      for x = x0, x1 do
        for y = 108, H - 1 do if pred(get(x, y)) then n = n + 1 end end
      end
      return n
    end
    local function greenish(r, g, b) return g > 100 and g > r + 60 and g > b + 40 end
    local function reddish(r, g, b) return r > 150 and r > g + 80 and r > b + 80 end
    assert.truthy(count(0, W // 2 - 1, greenish) > 20, "no green caption under the first image")
    assert.equal(count(0, W // 2 - 1, reddish), 0)
    assert.truthy(count(W // 2, W - 1, reddish) > 20, "no red caption under the second image")
    assert.equal(count(W // 2, W - 1, greenish), 0)
  end)
end)

describe("colours", function()
  it("colormaps match matplotlib's", function()
    local ref = {
      viridis = {{0, {0.267004, 0.004874, 0.329415}}, {1, {0.993248, 0.906157, 0.143936}}, {0.5, {0.127568, 0.566949, 0.550556}}},
      magma = {{0, {0.001462, 0.000466, 0.013866}}, {1, {0.987053, 0.991438, 0.749504}}, {0.5, {0.716387, 0.214982, 0.47529}}},
      inferno = {{0.5, {0.735683, 0.215906, 0.330245}}, {1, {0.988362, 0.998364, 0.644924}}},
      gray = {{0.5, {0.501961, 0.501961, 0.501961}}, {1, {1, 1, 1}}},
      Blues = {{0, {0.968627, 0.984314, 1.0}}, {0.5, {0.417086, 0.680631, 0.838231}}, {1, {0.031373, 0.188235, 0.419608}}},
      Reds = {{0.5, {0.983576, 0.412795, 0.288351}}, {1, {0.403922, 0.0, 0.05098}}},
      Greens = {{0.5, {0.451765, 0.76709, 0.461207}}, {1, {0.0, 0.266667, 0.105882}}},
      RdBu_r = {{0, {0.019608, 0.188235, 0.380392}}, {0.5, {0.969089, 0.966474, 0.964937}}, {1, {0.403922, 0.0, 0.121569}}},
      coolwarm = {{0, {0.229806, 0.298718, 0.753683}}, {0.5, {0.867428, 0.864377, 0.862602}}, {1, {0.705673, 0.015556, 0.150233}}},
    }
    for name, pts in pairs(ref) do
      local f = plot.colormap(name)
      for _, p in ipairs(pts) do
        local r, g, b = f(p[1])
        assert.near(r, p[2][1], 1.2 / 255, name .. " r at " .. p[1])
        assert.near(g, p[2][2], 1.2 / 255, name .. " g at " .. p[1])
        assert.near(b, p[2][3], 1.2 / 255, name .. " b at " .. p[1])
      end
    end
    -- clamped outside [0, 1]
    assert.same({plot.colormap("viridis")(-3)}, {plot.colormap("viridis")(0)})
    assert.same({plot.colormap("viridis")(7)}, {plot.colormap("viridis")(1)})
  end)

  it("apply_colormap maps a ramp like colormap(), fast", function()
    local ramp = av.linspace(-1, 3, 101):view(1, 101)
    local out = plot.apply_colormap(ramp, "magma", {vmin = -1, vmax = 3})
    assert.equal(out:dtype(), "uint8")
    assert.same(out:size(), {3, 1, 101})
    local f = plot.colormap("magma")
    local l = out:tolist()
    for i = 1, 101, 10 do
      local r, g, b = f((i - 1) / 100)
      assert.near(l[1][1][i], r * 255, 1)
      assert.near(l[2][1][i], g * 255, 1)
      assert.near(l[3][1][i], b * 255, 1)
    end
    local t0 = os.clock()
    local big = plot.apply_colormap(av.rand(224, 224), "viridis")
    assert.same(big:size(), {3, 224, 224})
    assert.truthy(os.clock() - t0 < 0.5, "apply_colormap on 224 x 224 is slow")
  end)

  it("palette, color", function()
    local p = plot.palette(10)
    assert.equal(#p, 10)
    assert.near(p[1][1], 0.1216, 1e-3)
    assert.equal(#plot.palette(20), 20)
    local big = plot.palette(50)
    assert.equal(#big, 50)
    local seen = {}
    for _, c in ipairs(big) do
      local k = ("%d,%d,%d"):format(c[1] * 255 // 1, c[2] * 255 // 1, c[3] * 255 // 1)
      assert.falsy(seen[k], "repeated colour in palette(50)")
      seen[k] = true
    end
    assert.same({plot.color("#ff8000")}, {1, 128 / 255, 0})
    assert.same({plot.color({0, 255, 0})}, {0, 1, 0})
    local r, g, b = plot.color("C1")
    assert.near(r, 1, 1e-3); assert.near(g, 0.498, 1e-3); assert.near(b, 0.0549, 1e-3)
    assert.error_matches(function() plot.color("blurple") end, "unknown colour 'blurple'")
  end)

  it("nice ticks", function()
    local t, step = plot.nice_ticks(0, 1, 5)
    assert.equal(step, 0.2)
    assert.same(t, {0, 0.2, 0.4, 0.6000000000000001, 0.8, 1})
    local _, s2 = plot.nice_ticks(0, 10, 4)
    assert.equal(s2, 2.5)
    assert.equal(plot.tick_format(0.25)(0.5), "0.50")
    assert.equal(plot.tick_format(5)(-0.0), "0")
  end)
end)

describe("output", function()
  it("save writes atomically and returns the path; png and tensor agree", function()
    local dir = av_test.tmpname("_plotdir")
    os.execute("mkdir -p '" .. dir .. "'")
    local path = dir .. "/fig.png"
    local fig = plot.lines{series = {{y = {1, 3, 2}}}, width = 320, height = 240}
    assert.equal(fig:save(path), path)
    local img = image.load(path)
    assert.same(img:size(), {3, 240, 320})
    local p = io.popen("ls -a '" .. dir .. "'")
    local names = p:read("a")
    p:close()
    assert.falsy(names:find("tmp", 1, true), "a temporary file was left: " .. names)
    local t = fig:tensor()
    assert.equal((t:double() - img:double()):abs():max():item(), 0)
    assert.equal(fig:png():sub(1, 8), "\137PNG\r\n\26\n")
    os.remove(path)
    os.execute("rmdir '" .. dir .. "'")
  end)

  it("an unwritable path gives a clear error", function()
    local fig = plot.lines{series = {{y = {1, 2}}}, width = 100, height = 100}
    assert.error_matches(function() fig:save("/nonexistent_dir_aviary/x.png") end, "Figure:save")
    assert.error_matches(function() fig:save("/nonexistent_dir_aviary/x.png") end, "/nonexistent_dir_aviary/x.png")
  end)
end)

describe("PlotSurface", function()
  it("draws paths, text and images; closes", function()
    local S = av._plot.new(120, 60)
    S:set_source_rgba(1, 1, 1):paint():select_font(true, 10):set_font_size(20)
    local w, h, xb, yb, xa = S:text_extents("Hi")
    assert.truthy(w > 10 and h > 10 and yb < 0 and xa >= w)
    S:set_source_rgba(0, 0, 0):move_to(5, 40):show_text("Hi")
    S:paint_image(av.tensor({{{1, 0}, {0, 1}}, {{0, 0}, {0, 0}}, {{0, 1}, {1, 0}}}, {dtype = "float32"}), 60, 0, 60, 60, "nearest")
    local get = pixels(S:tensor())
    assert.same({get(75, 15)}, {255, 0, 0})
    assert.same({get(105, 15)}, {0, 0, 255})
    local dark = 0
    for x = 0, 59 do for y = 0, 59 do if get(x, y) < 80 then dark = dark + 1 end end end
    assert.truthy(dark > 20, "no text drawn")
    assert.equal(tostring(S), "PlotSurface 120x60")
    S:close()
    assert.error_matches(function() S:png() end, "has been closed")
    assert.error_matches(function() av._plot.new(0, 5) end, "surface size must be 1..32767")
    assert.error_matches(function() av._plot.new(5, 5):set_dash({-1}) end, "dash lengths must be non-negative")
  end)
end)

describe("bad input", function()
  it("names the function and the argument", function()
    local ax = plot.figure():axes()
    assert.error_matches(function() ax:line({1, 2}, {1, 2, 3}) end, "Axes:line: x and y have different lengths (2 and 3)")
    assert.error_matches(function() ax:line({}, {}) end, "Axes:line: y is empty")
    assert.error_matches(function() ax:line({1}, {1}, {colour = "red"}) end, "unknown option 'colour' (did you mean 'color'?)")
    assert.error_matches(function() ax:scatter({1}, {"a"}) end, "y[1] must be a number")
    assert.error_matches(function() ax:heatmap({{1, 2}, {3}}) end, "Axes:heatmap: data rows have different lengths")
    assert.error_matches(function() ax:heatmap({{1}}, {cmap = "nope"}) end, "unknown colormap 'nope' (valid: ")
    assert.error_matches(function() plot.colormap("virdis") end, "viridis")
    assert.error_matches(function() ax:set{legend = "middle"} end, "legend must be false or one of")
    assert.error_matches(function() ax:set{xlim = {1, 1}} end, "xlim must be {a, b}")
    assert.error_matches(function() plot.bars{labels = {"a"}, values = {1, 2}} end, "aviary.plot.bars: labels and values have different lengths")
    assert.error_matches(function() plot.bars{values = {1}, sort = "up"} end, "sort must be 'desc', 'asc'")
    assert.error_matches(function() plot.lines{series = {{x = {1}, y = {1, 2}}}} end, "aviary.plot.lines: series[1]: x and y have different lengths")
    assert.error_matches(function() plot.hist{series = {{values = {}}}} end, "series[1].values is empty")
    assert.error_matches(function() plot.figure{widht = 3} end, "aviary.plot.figure: unknown option 'widht'")
    assert.error_matches(function() plot.figure():axes(2) end, "Figure:axes: panel index must be an integer in 1..1")
    assert.error_matches(function() plot.image_grid{images = {av.zeros(4, 5, 5)}} end, "images[1] must be C x H x W with C = 1 or 3")
    assert.error_matches(function() plot.apply_colormap(av.zeros(3), "viridis") end, "expected an H x W tensor")
    assert.error_matches(function() plot.scatter{x = {1, 2}, y = {1, 2}, groups = {1, 0}} end, "groups[2] must be a positive integer")
  end)
end)
