-- aviary.interpret.visualize: Captum's attribution normalisation (against a numpy re-implementation of
-- captum.attr.visualization._normalize_attr), the panel methods pixel by pixel on synthetic inputs,
-- figures that render at the expected size, feature-map grids, and clear errors.
local av = require "aviary"
local viz = require "aviary.interpret.visualize"
local plot = require "aviary.plot"
local image = require "aviary.image"

local function px(t, c, y, x) return t[c][y][x] end   -- 1-based channel, row, column of a uint8 3 x H x W

-- Captum's algorithm in numpy (visualization.py: _cumulative_sum_threshold, _normalize_attr)
local CAPTUM_PY = [==[
import sys, json
import numpy as np
sys.path.insert(0, sys.argv[1])
import st, torch
t, meta = st.load(sys.argv[2])

def _cumulative_sum_threshold(values, percentile):
    assert 0 <= percentile <= 100
    if percentile == 100:
        return np.max(values)
    sorted_vals = np.sort(values.flatten())
    cum_sums = np.cumsum(sorted_vals)
    threshold_id = np.where(cum_sums >= cum_sums[-1] * 0.01 * percentile)[0][0]
    return sorted_vals[threshold_id]

def _normalize_scale(attr, scale_factor):
    attr_norm = attr / scale_factor
    return np.clip(attr_norm, -1, 1)

def _normalize_attr(attr, sign, outlier_perc=2, reduction_axis=None):
    attr_combined = attr
    if reduction_axis is not None:
        attr_combined = np.sum(attr, axis=reduction_axis)
    if sign == "all":
        threshold = _cumulative_sum_threshold(np.abs(attr_combined), 100 - outlier_perc)
    elif sign == "positive":
        attr_combined = (attr_combined > 0) * attr_combined
        threshold = _cumulative_sum_threshold(attr_combined, 100 - outlier_perc)
    elif sign == "negative":
        attr_combined = (attr_combined < 0) * attr_combined
        threshold = -1 * _cumulative_sum_threshold(np.abs(attr_combined), 100 - outlier_perc)
    else:
        attr_combined = np.abs(attr_combined)
        threshold = _cumulative_sum_threshold(attr_combined, 100 - outlier_perc)
    return _normalize_scale(attr_combined, threshold)

cases = json.loads(meta["cases"])
out = {}
for c in cases:
    a = t[c["input"]].double().numpy().transpose(1, 2, 0)          # C x H x W -> H x W x C, as Captum takes it
    out[c["name"]] = torch.from_numpy(np.ascontiguousarray(_normalize_attr(a, c["sign"], c["outlier_perc"], 2))).float()
st.save(sys.argv[3], out)
]==]

describe("normalize_attr", function()
  it("matches Captum's _normalize_attr (numpy) for every sign and outlier percentage", function()
    if not av_test.have_torch() then skip("python3-torch not installed") end
    av.manual_seed(7)
    local inputs, cases, mine = {}, {}, {}
    local k = 0
    for ai, shape in ipairs({{3, 17, 13}, {1, 9, 11}}) do
      local a = av.randn(shape) * av.rand(shape)        -- varied magnitudes
      if ai == 2 then a = a + 0.3 end                   -- mostly positive
      inputs["a" .. ai] = a
      for _, sign in ipairs(viz.SIGNS) do
        for _, op in ipairs({2, 10, 0}) do
          k = k + 1
          local name = ("c%d"):format(k)
          cases[#cases + 1] = {name = name, input = "a" .. ai, sign = sign, outlier_perc = op}
          mine[name] = viz.normalize_attr(a, sign, op)
        end
      end
    end
    local fin, fout = av_test.tmpname(".in.safetensors"), av_test.tmpname(".out.safetensors")
    local pyf = av_test.tmpname(".py")
    local f = assert(io.open(pyf, "w")); f:write(CAPTUM_PY); f:close()
    av.save(fin, inputs, {cases = require("cjson").encode(cases)})
    local ok, out = av_test.python(pyf, av_test.root .. "/tests/parity", fin, fout)
    os.remove(fin); os.remove(pyf)
    assert.truthy(ok, out)
    local ref = av.load(fout)
    os.remove(fout)
    for _, c in ipairs(cases) do
      local m = mine[c.name]
      assert.same(m:size(), ref[c.name]:size())
      local d = (m:double() - ref[c.name]:double()):abs():max():item()
      assert.truthy(d < 1e-5, ("%s sign=%s outlier_perc=%g: max difference %g"):format(c.input, c.sign, c.outlier_perc, d))
    end
  end)

  it("ranges: 'all' in [-1, 1], the others in [0, 1]; 'negative' gives magnitudes of negative values", function()
    local a = av.tensor({{{-4, -1, 0}, {1, 2, 8}}})
    local neg = viz.normalize_attr(a, "negative", 0)
    assert.tensor_near(neg, av.tensor({{1, 0.25, 0}, {0, 0, 0}}), 1e-6)
    local pos = viz.normalize_attr(a, "positive", 0)
    assert.tensor_near(pos, av.tensor({{0, 0, 0}, {0.125, 0.25, 1}}), 1e-6)
    local all = viz.normalize_attr(a, "all", 0)
    assert.tensor_near(all, av.tensor({{-0.5, -0.125, 0}, {0.125, 0.25, 1}}), 1e-6)
    -- outlier_perc clips the largest values to 1
    local clipped = viz.normalize_attr(a, "absolute_value", 50)
    assert.truthy(clipped:max():item() == 1 and clipped[1][1] == 1)
    -- channels are summed; 1 x C x H x W and H x W are accepted
    local b = av.randn(2, 3, 5, 4)
    assert.tensor_near(viz.normalize_attr(b:narrow(1, 1, 1), "all"), viz.normalize_attr(b[1]:sum(1), "all"), 1e-6)
    -- an all-zero attribution gives zeros (Captum would assert on the zero scale)
    assert.equal(viz.normalize_attr(av.zeros(3, 4, 4), "absolute_value"):abs():sum():item(), 0)
  end)
end)

describe("visualize_image_attr", function()
  local H, W = 6, 8
  -- an attribution whose channel sum is a ramp from -1 to 1 along x (scale 1 with outlier_perc 0 and the
  -- column of 1s making up more than 0 % of the total)
  local function ramp_attr()
    local row = av.linspace(-1, 1, W)
    return row:view(1, 1, W):expand(1, H, W):contiguous()
  end

  it("heat_map colours equal the colormap at the normalised values", function()
    local attr = ramp_attr()
    local img = av.rand(3, H, W)
    -- 'absolute_value' -> Blues over [0, 1]
    local p, m = viz.visualize_image_attr(attr, img, {method = "heat_map", sign = "absolute_value", outlier_perc = 0})
    assert.same(p:size(), {3, H, W}); assert.equal(p:dtype(), "uint8")
    local blues = plot.colormap("Blues")
    for x = 1, W do
      local v = m[3][x]
      assert.near(v, math.abs(-1 + 2 * (x - 1) / (W - 1)), 1e-5)
      local r, g, b = blues(v)
      assert.near(px(p, 1, 3, x), r * 255, 1.01); assert.near(px(p, 2, 3, x), g * 255, 1.01); assert.near(px(p, 3, 3, x), b * 255, 1.01)
    end
    -- 'all' -> red (-1), white (0), green (#008000, +1)
    local attr5 = av.tensor({-1, -0.5, 0, 0.5, 1}):view(1, 1, 5)
    local q = viz.visualize_image_attr(attr5, nil, {method = "heat_map", sign = "all", outlier_perc = 0})
    local expect = {{255, 0, 0}, {255, 128, 128}, {255, 255, 255}, {128, 192, 128}, {0, 128, 0}}
    for x = 1, 5 do
      for c = 1, 3 do assert.near(px(q, c, 1, x), expect[x][c], 1.01, ("x=%d c=%d"):format(x, c)) end
    end
    -- 'positive' -> Greens, 'negative' -> Reds; a named cmap overrides
    local g = viz.visualize_image_attr(attr5, nil, {sign = "positive", outlier_perc = 0})
    local gr, gg, gb = plot.colormap("Greens")(1)
    assert.near(px(g, 1, 1, 5), gr * 255, 1.01); assert.near(px(g, 2, 1, 5), gg * 255, 1.01); assert.near(px(g, 3, 1, 5), gb * 255, 1.01)
    local r = viz.visualize_image_attr(attr5, nil, {sign = "negative", outlier_perc = 0})
    local rr, rg, rb = plot.colormap("Reds")(1)
    assert.near(px(r, 1, 1, 1), rr * 255, 1.01); assert.near(px(r, 2, 1, 1), rg * 255, 1.01); assert.near(px(r, 3, 1, 1), rb * 255, 1.01)
    local v = viz.visualize_image_attr(attr5, nil, {sign = "positive", outlier_perc = 0, cmap = "viridis"})
    local vr = plot.colormap("viridis")(0.5)
    assert.near(px(v, 1, 1, 4), vr * 255, 1.01)
  end)

  it("blended_heat_map: grey original under the heat map with alpha_overlay", function()
    -- image: left half black, right half white; attribution: zero (Blues(0) is near white)
    local img = av.zeros(3, H, W, {dtype = "uint8"})
    img:narrow(3, W / 2 + 1, W / 2):fill_(255)
    local attr = av.zeros(1, H, W)
    attr[1][1][1] = 1
    local p = viz.visualize_image_attr(attr, img, {method = "blended_heat_map", sign = "absolute_value", alpha_overlay = 0.25,
      outlier_perc = 0})
    local r0, g0, b0 = plot.colormap("Blues")(0)
    -- a dark pixel: 0.75 * 0 + 0.25 * Blues(0); a light one: 0.75 * 1 + 0.25 * Blues(0)
    assert.near(px(p, 1, 2, 2), 0.25 * r0 * 255, 1.01); assert.near(px(p, 3, 2, 2), 0.25 * b0 * 255, 1.01)
    assert.near(px(p, 1, 2, W), (0.75 + 0.25 * r0) * 255, 1.01); assert.near(px(p, 2, 2, W), (0.75 + 0.25 * g0) * 255, 1.01)
    -- the attributed pixel has Blues(1) at a quarter
    local r1, g1, b1 = plot.colormap("Blues")(1)
    assert.near(px(p, 3, 1, 1), 0.25 * b1 * 255, 1.01)
  end)

  it("masked_image: image * normalised attribution (zero attribution -> black)", function()
    local img = av.full({3, H, W}, 200):byte()
    local z = viz.visualize_image_attr(av.zeros(3, H, W), img, {method = "masked_image", sign = "positive"})
    assert.equal(z:double():sum():item(), 0)
    local p = viz.visualize_image_attr(ramp_attr(), img, {method = "masked_image", sign = "positive", outlier_perc = 0})
    for x = 1, W do
      local v = math.max(0, -1 + 2 * (x - 1) / (W - 1))
      assert.near(px(p, 2, 4, x), 200 * v, 1.01)
    end
  end)

  it("alpha_scaling: the image with alpha = normalised attribution, on white", function()
    local img = av.zeros(3, H, W)
    img:select(1, 1):fill_(1)                                           -- pure red
    local p = viz.visualize_image_attr(ramp_attr(), img, {method = "alpha_scaling", sign = "absolute_value", outlier_perc = 0})
    for x = 1, W do
      local a = math.abs(-1 + 2 * (x - 1) / (W - 1))
      assert.near(px(p, 1, 1, x), 255, 1.01)
      assert.near(px(p, 2, 1, x), 255 * (1 - a), 1.01)
    end
    local o = viz.visualize_image_attr(nil, img, {method = "original_image"})
    assert.equal(px(o, 1, 1, 1), 255); assert.equal(px(o, 2, 1, 1), 0)
  end)

  it("errors: shapes, methods, signs, options, an un-upsampled map", function()
    local img = av.rand(3, 16, 16)
    assert.error_matches(function() viz.visualize_image_attr(av.rand(1, 7, 7), img, {method = "heat_map"}) end,
      "upsample the attribution")
    assert.error_matches(function() viz.visualize_image_attr(av.rand(1, 16, 16), img, {method = "heatmap"}) end,
      "unknown method 'heatmap' (valid: heat_map, blended_heat_map")
    assert.error_matches(function() viz.visualize_image_attr(av.rand(1, 16, 16), img, {sign = "abs"}) end,
      "unknown sign 'abs' (valid: all, positive, negative, absolute_value)")
    assert.error_matches(function() viz.visualize_image_attr(av.rand(1, 16, 16), img, {method = "masked_image", sign = "all"}) end,
      "both positive and negative")
    assert.error_matches(function() viz.visualize_image_attr(av.rand(1, 16, 16), img, {colormap = "Blues"}) end,
      "unknown option 'colormap'")
    assert.error_matches(function() viz.visualize_image_attr(av.rand(1, 16, 16), img, {cmap = "Bluez"}) end,
      "unknown colormap 'Bluez'")
    assert.error_matches(function() viz.normalize_attr(av.rand(2, 3, 4, 4), "all") end, "one image")
    assert.error_matches(function() viz.normalize_attr(av.rand(4), "all") end, "got 4")
    assert.error_matches(function() viz.normalize_attr(av.rand(3, 4, 4), "all", 120) end, "outlier_perc")
    assert.error_matches(function() viz.visualize_image_attr(av.rand(1, 16, 16), av.rand(4, 16, 16)) end, "3 x H x W")
    assert.error_matches(function() viz.figure(img, {{attr = av.rand(1, 8, 8)}}) end, "panels[1]: the attribution is 8x8")
    assert.error_matches(function() viz.figure(img, {{atr = av.rand(1, 16, 16)}}) end, "unknown key 'atr'")
  end)
end)

describe("figures", function()
  it("figure: the original and one titled panel per entry, with colour bars; decodes at the expected size", function()
    local img = av.rand(3, 40, 50)
    local a = av.randn(3, 40, 50)
    local fig = viz.figure(img, {
      {attr = a, method = "heat_map", sign = "all", title = "heat all"},
      {attr = a, method = "blended_heat_map", sign = "absolute_value"},
      {attr = a, method = "masked_image", sign = "positive"},
      {attr = a, method = "alpha_scaling", sign = "negative"},
      {attr = a, method = "heat_map", sign = "positive", cmap = "magma"},
    }, {cell = 120, cols = 3, title = "Attributions"})
    local path = av_test.tmpname(".png")
    fig:save(path)
    local dec = image.load(path)
    os.remove(path)
    -- pad 14, title row 24, cell 120, colour bar band 36; a figure title of 36
    assert.same(dec:size(), {3, 36 + 14 + 2 * (24 + 120 + 36 + 14), 14 + 3 * (120 + 14)})
    assert.equal(#fig.panels, 6)
    assert.equal(fig.panels[2].title, "heat all")
    assert.equal(fig.panels[3].title, "blended_heat_map (absolute_value)")
    assert.truthy(fig.panels[2].bar and fig.panels[3].bar and not fig.panels[4].bar)
    -- the colour bar under the 'all' heat map runs red -> white -> green
    local t = fig:tensor()
    local x0, y = 14 + 134 + 10, 36 + 14 + 24 + 120 + 6 + 5
    local function at(x) return px(t, 1, y + 1, x + 1), px(t, 2, y + 1, x + 1), px(t, 3, y + 1, x + 1) end
    local r, g, b = at(x0 + 2)
    assert.truthy(r > 200 and g < 80 and b < 80, ("left end %d %d %d"):format(r, g, b))
    r, g, b = at(x0 + 50)
    assert.truthy(r > 230 and g > 230 and b > 230, ("middle %d %d %d"):format(r, g, b))
    r, g, b = at(x0 + 97)
    assert.truthy(r < 60 and g > 100 and b < 60, ("right end %d %d %d"):format(r, g, b))
  end)

  it("feature_maps picks the strongest channels, titled with their numbers", function()
    local act = av.rand(12, 5, 6) * 0.1
    act[4]:add_(3); act[9]:add_(2); act[2]:add_(1)
    local fig, chans = viz.feature_maps(act:unsqueeze(1), {max = 3, cell = 48})
    assert.same(chans, {4, 9, 2})
    local t = fig:tensor()
    assert.equal(t:size(1), 3)
    local fig2, ch2 = viz.feature_maps(act, {channels = {1, 12}})
    assert.same(ch2, {1, 12})
    assert.truthy(fig2:png():sub(2, 4) == "PNG")
    local _, all = viz.feature_maps(act)
    assert.equal(#all, 12)
    assert.error_matches(function() viz.feature_maps(act, {channels = {13}}) end, "not a channel of this 12-channel")
    assert.error_matches(function() viz.feature_maps(av.rand(5, 5)) end, "C x h x w")
    assert.error_matches(function() viz.feature_maps(act, {maxx = 3}) end, "unknown option 'maxx'")
  end)
end)
