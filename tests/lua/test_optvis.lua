-- aviary.interpret.optvis: Lucent's image parameterisation (the inverse real FFT written as matrix
-- products, against torch.fft.irfftn; the colour decorrelation and sigmoid), the transforms (shapes,
-- gradients), the objectives and their arithmetic, and rendering on a small randomly initialised
-- ResNet-18: a channel objective raises that channel's activation far above its value on noise and
-- on photos; diversity gives different images; class_logit raises the logit; the model is untouched.
local av = require "aviary"
local optvis = require "aviary.interpret.optvis"
local models = require "aviary.models"
local image = require "aviary.image"
local parity = require "parity"
local gradcheck = require "gradcheck"

local obj, param, T = optvis.objectives, optvis.param, optvis.transforms

describe("param", function()
  it("fft image equals torch.fft.irfftn(spectrum * scale, s = (h, w), norm = 'ortho') / 4 (even and odd sizes)", function()
    for _, hw in ipairs({{8, 8}, {7, 9}, {6, 5}, {5, 6}, {16, 12}}) do
      local h, w = hw[1], hw[2]
      av.manual_seed(h * 100 + w)
      local params, image_f, scale = param.fft_image({2, 3, h, w}, 0.5)
      local spec = params[1]
      assert.same(spec:size(), {2, 3, h, (w % 2 == 1) and (w // 2 + 2) or (w // 2 + 1), 2})
      local img = image_f()
      assert.same(img:size(), {2, 3, h, w})
      -- the spectrum, the scale (Lucent's rfft2d_freqs and 1 / max(freq, 1 / max(w, h))) and the image
      local wf = spec:size(4)
      local freqs = ("torch.sqrt(torch.fft.fftfreq(%d)[:%d][None, :] ** 2 + torch.fft.fftfreq(%d)[:, None] ** 2)"):format(w, wf, h)
      local scale_py = ("(1.0 / torch.clamp(%s, min=1.0 / %d)).float()[None, None, :, :, None]"):format(freqs, math.max(w, h))
      parity.check(("fft scale %dx%d"):format(h, w), scale_py, {}, scale, {tol = 1e-6})
      parity.check(("fft image %dx%d"):format(h, w),
        ("torch.fft.irfftn(torch.view_as_complex((spec * %s).contiguous()), s=(%d, %d), norm='ortho') / 4"):format(scale_py, h, w),
        {spec = spec:detach()}, img:detach(), {tol = 1e-5})
      -- the general inverse, for any spectrum
      local s2 = av.randn(1, 2, h, wf, 2)
      parity.check(("irfft2 %dx%d"):format(h, w), ("torch.fft.irfftn(torch.view_as_complex(s.contiguous()), s=(%d, %d), norm='ortho')"):format(h, w),
        {s = s2}, param.irfft2(s2, h, w), {tol = 1e-5})
    end
  end)

  it("colour decorrelation and sigmoid match Lucent's numbers", function()
    -- max column norm of color_correlation_svd_sqrt: sqrt(0.26^2 + 0.27^2 + 0.27^2)
    assert.near(param.max_norm_svd_sqrt, math.sqrt(0.26 ^ 2 + 0.27 ^ 2 + 0.27 ^ 2), 1e-12)
    assert.near(param.color_correlation_normalized[1][1], 0.26 / 0.4619523, 1e-6)
    assert.near(param.color_correlation_normalized[2][3], -0.05 / 0.4619523, 1e-6)
    av.manual_seed(3)
    local x = av.randn(2, 3, 5, 4)
    local rgb = param.to_valid_rgb(function() return x end, true)()
    local M = "torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])"
    parity.check("to_valid_rgb decorrelate", ("torch.sigmoid(torch.matmul(x.permute(0, 2, 3, 1), (%s / torch.max(torch.linalg.norm(%s, dim=0))).T).permute(0, 3, 1, 2))")
      :format(M, M), {x = x}, rgb, {tol = 1e-6})
    parity.check("to_valid_rgb plain", "torch.sigmoid(x)", {x = x}, param.to_valid_rgb(function() return x end, false)(), {tol = 1e-6})
    -- param.image: shapes, range, parameters requiring grad
    local p = param.image(20, {batch = 2})
    local im = p.image()
    assert.same(im:size(), {2, 3, 20, 20})
    assert.truthy(im:min():item() > 0 and im:max():item() < 1)
    assert.truthy(p.params[1].requires_grad)
    local q = param.image({12, 10}, {fft = false, sd = 0.1})
    assert.same(q.params[1]:size(), {1, 3, 12, 10})
    assert.same(q.image():size(), {1, 3, 12, 10})
    assert.error_matches(function() param.image(16, {bach = 2}) end, "unknown option 'bach'")
    assert.error_matches(function() param.image(1) end, "size must be an integer >= 2")
  end)
end)
parity.run("optvis param")

describe("transforms", function()
  it("shapes: pad, jitter, random_scale, rotate, and the standard chain", function()
    local x = av.rand(1, 3, 40, 40)
    local rng = optvis.rng(3)
    local p = T.pad(12)(x, rng)
    assert.same(p:size(), {1, 3, 64, 64})
    assert.near(p[1][1][1][1], 0.5, 1e-7)
    assert.same(T.jitter(8)(x, rng):size(), {1, 3, 40, 40})
    -- kornia.translate: content moves right by dx and down by dy, zeros come in
    local t = T.translate(x, 2, 1)
    assert.near(t[1][2][2][3], x[1][2][1][1], 1e-7)
    assert.equal(t[1][1][1][1], 0)
    -- Lucent's random_scale: ceil(s * 40) then zero padding of ceil((40 - n) / 2) when smaller
    assert.same(T.random_scale({0.9})(x, rng):size(), {1, 3, 36 + 4, 36 + 4})
    assert.same(T.random_scale({1.1})(x, rng):size(), {1, 3, 44, 44})
    assert.same(T.random_scale({0.92})(x, rng):size(), {1, 3, 37 + 4, 37 + 4})
    -- rotation by 0 is the identity; by 90 degrees a transpose with a flip (exact grid points)
    assert.truthy(T.rotate(x, 0) == x)
    local r = T.rotate(x, 90)
    assert.same(r:size(), {1, 3, 40, 40})
    -- (centre 19.5): out[y][x] = in[x][39 - y], the transpose with its rows reversed
    assert.tensor_near(r, x:transpose(3, 4):index_select(3, av.arange(40, 0, -1)), 1e-4)
    local s = T.compose(T.standard)(av.rand(2, 3, 48, 48), optvis.rng(1))
    assert.equal(s:size(1), 2); assert.equal(s:size(2), 3)
    assert.truthy(s:size(3) >= 70 and s:size(3) <= 74, "size " .. s:size(3))
    assert.equal(#T.scales, 11); assert.near(T.scales[1], 0.9, 1e-12); assert.near(T.scales[11], 1.1, 1e-12)
    assert.equal(#T.angles, 26)
  end)

  it("rotation: a 90-degree turn moves pixels as expected", function()
    local x = av.zeros(1, 1, 5, 5)
    x[1][1][1][5] = 1                       -- top right corner
    local r = T.rotate(x, 90)
    local pos
    for i = 1, 5 do for j = 1, 5 do if r[1][1][i][j] > 0.99 then pos = {i, j} end end end
    assert.truthy(pos, "the pixel vanished")
    -- a quarter turn takes a corner to a neighbouring corner
    assert.truthy((pos[1] == 1 or pos[1] == 5) and (pos[2] == 1 or pos[2] == 5) and not (pos[1] == 1 and pos[2] == 5))
    assert.near(r:sum():item(), 1, 1e-5)
  end)

  it("gradients flow through every transform (finite differences for rotate, scale, jitter, pad)", function()
    local x = av.randn(1, 2, 6, 7, {dtype = "float64"})
    gradcheck.check(function(a) return T.rotate(a, 7) end, {x:clone()})
    gradcheck.check(function(a) return T.random_scale({0.9})(a, optvis.rng(1)) end, {x:clone()})
    gradcheck.check(function(a) return T.translate(a, 2, 3) end, {x:clone()})
    gradcheck.check(function(a) return T.pad(2)(a) end, {x:clone()})
    -- and the whole chain from the Fourier parameters
    av.manual_seed(1)
    local p = param.image(32)
    local y = T.normalize()(T.compose(T.standard)(p.image(), optvis.rng(2)))
    local g = av.grad({(y ^ 2):mean()}, p.params)[1]
    assert.same(g:size(), p.params[1]:size())
    assert.truthy(g:abs():sum():item() > 0, "no gradient reached the spectrum")
  end)
end)

describe("objectives", function()
  it("values and arithmetic on captured activations", function()
    local a = av.tensor({{{{1, 2}, {3, 4}}, {{-1, 0}, {5, 6}}}}, {dtype = "float32"})   -- 1 x 2 x 2 x 2
    local h = {L = a, __output = av.tensor({{0.5, 2, -1}})}
    assert.near(obj.channel("L", 1).fn(h):item(), -2.5, 1e-6)
    assert.near(obj.channel("L", 2).fn(h):item(), -2.5, 1e-6)
    assert.near(obj.neuron("L", 2, 1, 2).fn(h):item(), -5, 1e-6)             -- column 1, row 2
    assert.near(obj.neuron("L", 1).fn(h):item(), -4, 1e-6)                   -- centre (2, 2)
    assert.near(obj.deepdream("L").fn(h):item(), -(1 + 4 + 9 + 16 + 1 + 0 + 25 + 36) / 8, 1e-6)
    assert.near(obj.class_logit(2).fn(h):item(), -2, 1e-6)
    local c = obj.channel("L", 1) - 1e2 * obj.diversity("L")
    assert.same(c.layers, {"L"})
    assert.near((obj.channel("L", 1) + obj.channel("L", 2)).fn(h):item(), -5, 1e-6)
    assert.near((2 * obj.channel("L", 1)).fn(h):item(), -5, 1e-6)
    assert.near((obj.channel("L", 1) * 2).fn(h):item(), -5, 1e-6)
    assert.near((-obj.channel("L", 1)).fn(h):item(), 2.5, 1e-6)
    assert.near((obj.channel("L", 1) - 1).fn(h):item(), -3.5, 1e-6)
    assert.near((obj.channel("L", 1) / 5).fn(h):item(), -0.5, 1e-6)
    assert.truthy((obj.class_logit(1) + obj.channel("L", 1)).output)
    -- diversity: identical batch members give -1 (cosine 1, two ordered pairs, / batch 2); different ones more
    local same = {L = av.cat({a, a}, 1)}
    assert.near(obj.diversity("L").fn(same):item(), -1, 1e-5)
    local diff = {L = av.cat({a, a * av.tensor({1, -3}):view(1, 2, 1, 1)}, 1)}
    assert.truthy(obj.diversity("L").fn(diff):item() > -1 + 1e-3)
    assert.error_matches(function() return obj.channel("L", 1) + "x" end, "operands must be objectives or numbers")
    assert.error_matches(function() obj.channel("L", 0) end, "n must be a positive integer")
    assert.error_matches(function() obj.channel("L", 3).fn(h) end, "channel 3 is out of range: layer 'L' has 2 channels")
    assert.error_matches(function() obj.class_logit(4).fn(h) end, "class 4 is out of range")
  end)
end)

-- a 3 x S x S photo as float [0, 1]
local function photo(name, S)
  local im = image.load(av_test.root .. "/../shared/photos/" .. name)
  local s = math.min(im:size(2), im:size(3))
  return image.resize(image.center_crop(im, s), {S, S}):float() / 255
end

describe("render", function()
  local algo = av.conv2d_algorithm("im2col")     -- one path for every jittered size (no per-shape timing)
  av.manual_seed(0)
  local model = models.create("resnet18", {num_classes = 10})
  local norm = T.normalize()
  local before = {}
  for i, p in ipairs(model:parameters()) do before[i] = p:clone() end

  local S, layer, ch = 48, "layer3", 9
  local function baselines()
    av.manual_seed(5)
    local noise = optvis.mean_activation(model, layer, ch, norm(av.rand(4, 3, S, S)))
    local photos = {}
    for i, n in ipairs({"dog.jpg", "eagle.jpg", "giraffe.jpg", "chicken.jpg"}) do photos[i] = photo(n, S) end
    return noise, optvis.mean_activation(model, layer, ch, norm(av.stack(photos, 1)))
  end

  it("a channel objective raises the channel's activation far above noise and photos", function()
    av.manual_seed(1)
    local imgs, info = optvis.render(model, obj.channel(layer, ch), {param = param.image(S), steps = 80, transforms = {},
      progress = false})
    assert.same(imgs:size(), {1, 3, S, S}); assert.equal(imgs:dtype(), "uint8")
    assert.equal(#info.loss, 80)
    local vis = optvis.mean_activation(model, layer, ch, norm(imgs:float() / 255))
    local noise, real = baselines()
    local f_noise, f_real = vis / noise, vis / real
    print(("# optvis %s:%d, 80 steps, no transforms: mean activation %.4f; noise %.4f (x%.2f), photos %.4f (x%.2f); loss %.4f -> %.4f, %.1f s")
      :format(layer, ch, vis, noise, f_noise, real, f_real, info.loss[1], info.loss[#info.loss], info.seconds))
    assert.truthy(f_noise > 3, ("only %.2fx the activation on noise"):format(f_noise))
    assert.truthy(f_real > 3, ("only %.2fx the activation on photos"):format(f_real))
  end)

  it("with Lucent's standard transforms the activation still rises well above the start and photos", function()
    av.manual_seed(1)
    local p = param.image(S)
    local start = optvis.mean_activation(model, layer, ch, norm(p.image():detach()))
    local imgs, info = optvis.render(model, obj.channel(layer, ch), {param = p, steps = 48, progress = false})
    local vis = optvis.mean_activation(model, layer, ch, norm(imgs:float() / 255))
    local noise, real = baselines()
    print(("# optvis %s:%d, 48 steps, standard transforms: %.4f (start %.4f); noise x%.2f, photos x%.2f; loss %.4f -> %.4f, %.1f s")
      :format(layer, ch, vis, start, vis / noise, vis / real, info.loss[1], info.loss[#info.loss], info.seconds))
    assert.truthy(vis > 1.5 * start, ("%.4f -> %.4f"):format(start, vis))
    assert.truthy(vis > 1.5 * real, ("only %.2fx the activation on photos"):format(vis / real))
    assert.truthy(info.loss[#info.loss] < info.loss[1])
  end)

  it("the model is untouched: parameters, requires_grad, no .grad, training mode, hooks removed", function()
    for i, p in ipairs(model:parameters()) do
      assert.truthy(p.requires_grad, "parameter " .. i .. " lost requires_grad")
      assert.truthy(p.grad == nil, "parameter " .. i .. " has a .grad")
      assert.equal((p - before[i]):abs():max():item(), 0)
    end
    assert.truthy(model.training)              -- created in training mode, restored after
    for name, m in model:named_modules() do assert.truthy(rawget(m, "_hooks") == nil, "hook left on " .. name) end
  end)

  it("diversity with batch 2 gives different images", function()
    av.manual_seed(2)
    local p = param.image(32, {batch = 2})
    local o = obj.channel("layer1", 3) - 1e2 * obj.diversity("layer1")
    local imgs = optvis.render(model, o, {param = p, steps = 16, progress = false})
    assert.same(imgs:size(), {2, 3, 32, 32})
    local d = (imgs[1]:double() - imgs[2]:double()):abs():mean():item()
    assert.truthy(d > 2, ("the two images differ by only %.2f grey levels on average"):format(d))
  end)

  it("class_logit raises the logit", function()
    av.manual_seed(3)
    local p = param.image(32)
    local function logit(img) return av.no_grad(function() model:evaluate(); local v = model(norm(img))[1][4]; model:train(); return v end) end
    local start = logit(p.image():detach())
    local imgs, info = optvis.render(model, obj.class_logit(4), {param = p, steps = 24, transforms = {}, progress = false})
    local after = logit(imgs:float() / 255)
    print(("# class_logit 4: %.4f -> %.4f"):format(start, after))
    assert.truthy(after > start + 0.1, ("logit %.4f -> %.4f"):format(start, after))
  end)

  it("errors: unknown layer (lists names), bad channel, unknown option, not an objective; state restored", function()
    assert.error_matches(function() optvis.render(model, obj.channel("layer9", 1), {steps = 1, progress = false}) end,
      "no layer 'layer9'")
    assert.error_matches(function() optvis.render(model, obj.channel("layer9", 1), {steps = 1, progress = false}) end,
      "layer4")
    assert.error_matches(function()
      optvis.render(model, obj.channel("layer1", 999), {param = param.image(16), steps = 2, progress = false})
    end, "channel 999 is out of range: layer 'layer1' has 64 channels")
    assert.error_matches(function() optvis.render(model, obj.channel("layer1", 1), {stepz = 3}) end, "unknown option 'stepz'")
    assert.error_matches(function() optvis.render(model, function() end, {}) end, "objective must be built from optvis.objectives")
    assert.error_matches(function() optvis.mean_activation(model, "layer0", 1, av.rand(1, 3, 16, 16)) end, "no layer 'layer0'")
    for name, m in model:named_modules() do assert.truthy(rawget(m, "_hooks") == nil, "hook left on " .. name) end
    for _, p in ipairs(model:parameters()) do assert.truthy(p.requires_grad and p.grad == nil) end
  end)

  it("channel_grid: one titled visualisation per channel", function()
    local fig, imgs = optvis.channel_grid(model, "layer1", {1, 2}, {size = 16, steps = 2, cell = 32, progress = false})
    assert.equal(#imgs, 2)
    assert.same(imgs[1]:size(), {3, 16, 16})
    assert.truthy(fig:png():sub(2, 4) == "PNG")
  end)

  av.conv2d_algorithm(algo)
end)
