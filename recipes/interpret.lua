-- The study's walkthrough 005: what the network looks at (attributions, as Captum) and what its
-- neurons respond to (feature visualisation, as Lucent), with numbers that say whether an
-- attribution is right (the pointing game against the birds' bounding boxes).
--   bin/aviary recipes/interpret.lua --run models/<run> [--images a.jpg,b.jpg|DIR] [--methods ...]
-- Writes DIR/interpret/ (panels_<k>.png, feature_maps.png, optvis.png, pointing.json, summary.json)
-- and, when the run was evaluated, adds an Interpretation section to its report.html.
local av = require "aviary"
local json = require "aviary.json"

local usage = [[
usage: bin/aviary recipes/interpret.lua --run models/<run> [options]
  --run DIR            a run folder written by recipes/train.lua
  --checkpoint WHICH   best (default), last, or a .ckpt / .safetensors path
  --images LIST        image files (comma-separated) or a folder; default: --n images of the test split
  --n N                test images to explain when --images is not given (default 4)
  --methods LIST       comma-separated (default saliency,integrated_gradients,gradient_shap,occlusion,gradcam,
                       guided_gradcam); all: saliency input_x_gradient integrated_gradients smoothgrad gradient_shap
                       occlusion guided_backprop deconvolution gradcam guided_gradcam layer_integrated_gradients shapley
  --target N|pred      the class to explain (1-based; default pred, the predicted class)
  --layer NAME         the layer for Grad-CAM, feature maps and feature visualisation (default: the last
                       convolutional stage, layer4 for ResNets)
  --n-steps N          integration steps of integrated gradients (default 50)
  --pointing N         test images for the pointing game (default 100; 0 skips it); needs bounding boxes
  --boxes DIR          an extracted CUB_200_2011 folder whose bounding_boxes.txt covers the images
                       (default: DATA.dir when DATA.format='cub')
  --optvis N           channels of --layer to visualise (default 8; 0 skips it)
  --optvis-steps N     optimisation steps per visualisation (default 256)
  --out DIR            default <run>/interpret
  --quiet              no progress bars
  --help               this text]]

local cli = require "aviary.cli"
local usage_error = cli.usage_error
local OPTIONS = {"run", "checkpoint", "images", "n", "methods", "target", "layer", "n-steps", "pointing", "boxes", "optvis",
                 "optvis-steps", "out", "quiet", "help"}
local function parse_args(args)
  return cli.parse(args, {options = OPTIONS, flags = {quiet = true, help = true},
    ints = {n = 1, ["n-steps"] = 1, pointing = 0, optvis = 0, ["optvis-steps"] = 1}})
end

-- ---- methods: how each is built, run and drawn ---------------------------------------------
local METHODS = {
  saliency = {title = "Saliency", vis = {method = "heat_map", sign = "absolute_value"}},
  input_x_gradient = {title = "Input x gradient", vis = {method = "blended_heat_map", sign = "absolute_value"}},
  integrated_gradients = {title = "Integrated gradients", vis = {method = "blended_heat_map", sign = "absolute_value"}},
  smoothgrad = {title = "SmoothGrad (IG)", vis = {method = "blended_heat_map", sign = "absolute_value"}},
  gradient_shap = {title = "GradientShap", vis = {method = "blended_heat_map", sign = "absolute_value"}},
  occlusion = {title = "Occlusion", vis = {method = "blended_heat_map", sign = "positive"}},
  guided_backprop = {title = "Guided backprop", vis = {method = "heat_map", sign = "absolute_value"}},
  deconvolution = {title = "Deconvolution", vis = {method = "heat_map", sign = "absolute_value"}},
  gradcam = {title = "Grad-CAM", vis = {method = "blended_heat_map", sign = "positive"}},
  guided_gradcam = {title = "Guided Grad-CAM", vis = {method = "heat_map", sign = "absolute_value"}},
  layer_integrated_gradients = {title = "Layer IG (upsampled)", vis = {method = "blended_heat_map", sign = "absolute_value"}},
  shapley = {title = "Shapley value sampling", vis = {method = "blended_heat_map", sign = "positive"}},
}
local ORDER = {"saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradient_shap", "occlusion",
               "guided_backprop", "deconvolution", "gradcam", "guided_gradcam", "layer_integrated_gradients", "shapley"}

-- attributions of one method for a batch x (N x 3 x H x W) and targets; the result has x's spatial size
local function attribute(name, model, layer, x, target, o)
  local interpret = require "aviary.interpret"
  local H, W = x:size(3), x:size(4)
  if name == "saliency" then return interpret.Saliency(model):attribute(x, {target = target}) end
  if name == "input_x_gradient" then return interpret.InputXGradient(model):attribute(x, {target = target}) end
  if name == "integrated_gradients" then
    return (interpret.IntegratedGradients(model):attribute(x, {target = target, n_steps = o["n-steps"] or 50,
      internal_batch_size = 25}))
  end
  if name == "smoothgrad" then
    local ig = interpret.IntegratedGradients(model)
    return interpret.NoiseTunnel(ig):attribute(x, {target = target, nt_type = "smoothgrad", nt_samples = 4, stdevs = 0.15,
      n_steps = 16, internal_batch_size = 16, seed = 1})
  end
  if name == "gradient_shap" then   -- the study's settings: baselines 0*x and 1*x, 75 samples, stdevs 1e-4
    local outs = {}
    for i = 1, x:size(1) do
      local xi = x:narrow(1, i, 1)
      local base = av.cat({xi * 0, xi * 1}, 1)
      outs[i] = interpret.GradientShap(model):attribute(xi, {baselines = base, n_samples = 75, stdevs = 1e-4,
        target = type(target) == "table" and target[i] or target, seed = 1})
    end
    return av.cat(outs, 1)
  end
  if name == "occlusion" then       -- the study's window 3x15x15, stride 3x8x8
    return interpret.Occlusion(model):attribute(x, {sliding_window_shapes = {3, 15, 15}, strides = {3, 8, 8}, baselines = 0,
      target = target, perturbations_per_eval = 16})
  end
  if name == "guided_backprop" then return interpret.GuidedBackprop(model):attribute(x, {target = target}) end
  if name == "deconvolution" then return interpret.Deconvolution(model):attribute(x, {target = target}) end
  if name == "gradcam" then
    local cam = interpret.LayerGradCam(model, layer):attribute(x, {target = target, relu_attributions = true})
    return interpret.interpolate(cam, {H, W}, "bilinear")
  end
  if name == "guided_gradcam" then return interpret.GuidedGradCam(model, layer):attribute(x, {target = target}) end
  if name == "layer_integrated_gradients" then
    local a = interpret.LayerIntegratedGradients(model, layer):attribute(x, {target = target, n_steps = 32,
      internal_batch_size = 16})
    return interpret.interpolate(a:sum(2, true), {H, W}, "bilinear")
  end
  if name == "shapley" then        -- 8x8 pixel super-pixels as features (a full per-pixel run takes hours)
    local fw = math.ceil(W / 8)
    local ids = {}
    for yy = 0, H - 1 do for xx = 0, W - 1 do ids[#ids + 1] = (yy // 8) * fw + xx // 8 + 1 end end
    local mask = av.tensor(ids, {dtype = "int64"}):view(1, 1, H, W)
    return interpret.ShapleyValueSampling(model):attribute(x, {target = target, feature_mask = mask, n_samples = 4,
      perturbations_per_eval = 16, seed = 1})
  end
  error("unknown method " .. name)
end

-- the default layer for Grad-CAM: the last child that holds a convolution
local function default_layer(model)
  local last
  for name, child in model:named_children() do
    local has_conv = false
    for _, m in ipairs(child:modules()) do
      if getmetatable(m) and tostring(m):match("^Conv2d") then has_conv = true end
    end
    if has_conv then last = name end
  end
  return last
end

-- ---- images ----------------------------------------------------------------------------------
-- loads an image as the test transform does: resize the short side, centre crop; returns the
-- display image (uint8 3 x C x C), the normalised input (3 x C x C) and the crop's geometry
local function prepare(path, cfg)
  local image = require "aviary.image"
  local img = image.load(path)
  local h, w = img:size(2), img:size(3)
  local R, C = cfg.DATA.resize, cfg.DATA.crop
  local r = image.resize(img, R)
  local nh, nw = r:size(2), r:size(3)
  local crop = image.center_crop(r, C)
  local top, left = math.floor((nh - C) / 2 + 0.5), math.floor((nw - C) / 2 + 0.5)
  local x = image.to_float(crop, {mean = image.IMAGENET_MEAN, std = image.IMAGENET_STD})
  return crop, x, {w = w, h = h, sx = nw / w, sy = nh / h, top = top, left = left, size = C}
end

-- ---- the pointing game ------------------------------------------------------------------------
-- the attribution map's maximum, mapped back to the original image, inside the bird's box?
local function argmax2d(m)
  local H, W = m:size(1), m:size(2)
  local _, idx = m:reshape(-1):max(1)
  local k = idx:item() - 1
  return k // W, k % W, H, W
end

local function box_fraction(g, b)
  -- the share of the crop (in original pixels) that the box covers: a random point's chance
  local x0, y0 = g.left / g.sx, g.top / g.sy
  local x1, y1 = (g.left + g.size) / g.sx, (g.top + g.size) / g.sy
  local ix = math.max(0, math.min(x1, b.x + b.w) - math.max(x0, b.x))
  local iy = math.max(0, math.min(y1, b.y + b.h) - math.max(y0, b.y))
  return ix * iy / ((x1 - x0) * (y1 - y0))
end

local function inside(g, b, row, col)
  local x, y = (g.left + col + 0.5) / g.sx, (g.top + row + 0.5) / g.sy
  return x >= b.x and x <= b.x + b.w and y >= b.y and y <= b.y + b.h
end

local function boxes_from(root)
  local info = require("aviary.data.cub").read(root, {check_images = false})
  local by_name = {}
  for _, im in ipairs(info.images) do by_name[im.path:match("([^/]+)$")] = im.bbox end
  return by_name
end

local function pointing_game(model, layer, cfg, samples, boxes, methods, o)
  local rows = {}
  local n, base_sum = 0, 0.0
  local hits = {}
  for _, m in ipairs(methods) do hits[m] = 0 end
  local bar = not o.quiet and require("aviary.progress").bar(#samples, {label = "pointing game", unit = "img"}) or nil
  for _, s in ipairs(samples) do
    local b = boxes[s.path:match("([^/]+)$")]
    if b then
      local _, x, g = prepare(s.path, cfg)
      x = x:unsqueeze(1)
      n = n + 1
      base_sum = base_sum + box_fraction(g, b)
      for _, m in ipairs(methods) do
        local a = attribute(m, model, layer, x, s.target, o)
        local map = a:select(1, 1):abs():sum(1)
        local r, c = argmax2d(map)
        if inside(g, b, r, c) then hits[m] = hits[m] + 1 end
      end
    end
    if bar then bar:update(1) end
  end
  if bar then bar:finish() end
  for _, m in ipairs(methods) do
    rows[#rows + 1] = {method = METHODS[m].title, key = m, hits = hits[m], n = n, score = n > 0 and hits[m] / n or 0,
                       baseline = n > 0 and base_sum / n or 0}
  end
  return rows, n
end

-- ---- main -------------------------------------------------------------------------------------
local function main(args)
  local o = parse_args(args)
  if o.help then print(usage); return 0 end
  if not o.run then usage_error("--run DIR is required") end
  local run = require "aviary.run"
  local r = run.open(o.run, o.overrides)
  local cfg = r.cfg
  av.set_num_threads(cfg.SYSTEM.threads)
  -- attribution batches and jittered feature-visualisation inputs come in many shapes: skip the
  -- per-shape timing of the convolution algorithms and take oneDNN where it is built in
  pcall(av.conv2d_algorithm, "onednn")
  local methods = {}
  for m in (o.methods or "saliency,integrated_gradients,gradient_shap,occlusion,gradcam,guided_gradcam"):gmatch("[^,]+") do
    if not METHODS[m] then
      usage_error(("--methods: unknown method '%s' (did you mean '%s'? methods: %s)"):format(m,
        require("aviary.util").nearest(m, ORDER), table.concat(ORDER, ", ")))
    end
    methods[#methods + 1] = m
  end
  local net, info = run.model(r, {checkpoint = o.checkpoint})
  local layer = o.layer or default_layer(net)
  require("aviary.features").layer(net, layer)       -- an unknown name lists the layers
  local out = (o.out or (r.dir .. "/interpret")):gsub("/+$", "")
  os.execute("mkdir -p " .. run.sh(out))
  local rel = out:sub(1, #r.dir + 1) == r.dir .. "/" and out:sub(#r.dir + 2) or out

  -- the images: given, or the first of each class in the test split
  local ds
  local items = {}
  local classes
  if o.images then
    for _, p in ipairs(run.find_images(o.images, "--images")) do items[#items + 1] = {path = p} end
  end
  if not o.images or (o.pointing or 100) > 0 then
    run.check_data(cfg)
    ds = run.dataset(cfg, "test")
    classes = ds.classes
  end
  if not o.images then
    local seen = {}
    for _, s in ipairs(ds.samples) do
      if not seen[s.target] and #items < (o.n or 4) then seen[s.target] = true; items[#items + 1] = {path = s.path, target = s.target} end
    end
  end
  classes = classes or {}
  local names = require("aviary.evaluation").display_names(#classes > 0 and classes or (function()
    local t = {} for c = 1, cfg.MODEL.num_classes do t[c] = tostring(c) end return t end)())
  local targ = o.target
  if targ and targ ~= "pred" then
    targ = math.tointeger(tonumber(targ))
    if not targ or targ < 1 or targ > cfg.MODEL.num_classes then
      usage_error(("--target must be a class number in 1..%d or 'pred', got '%s'"):format(cfg.MODEL.num_classes, o.target))
    end
  else
    targ = nil
  end
  print(("interpreting %s (%s, %s): %d images, methods %s, layer %s"):format(r.name, cfg.MODEL.name, info.file, #items,
    table.concat(methods, ", "), layer))

  local viz = require "aviary.interpret.visualize"
  local summary = {run = r.name, methods = methods, layer = layer, panels = {}, checkpoint = info.file,
    note = ("Attributions for the predicted class (or --target) of test images, at the model's input size (%d px)."
      .. " Grad-CAM and feature maps at %s."):format(cfg.DATA.crop, layer)}
  local t0 = av.clock()
  for k, it in ipairs(items) do
    local disp, x = prepare(it.path, cfg)
    x = x:unsqueeze(1)
    local logits = av.no_grad(function() return net(x) end)
    local probs = av.softmax(logits:double(), 2)
    local p, pred = probs:max(2)
    pred = pred:item()
    local target = targ or pred
    local panels, times = {}, {}
    for _, m in ipairs(methods) do
      local t1 = av.clock()
      local a = attribute(m, net, layer, x, target, o)
      local spec = METHODS[m]
      times[m] = av.clock() - t1
      panels[#panels + 1] = {attr = a:select(1, 1), method = spec.vis.method, sign = spec.vis.sign, title = spec.title}
    end
    local truth = it.target and names[it.target] or nil
    local title = ("predicted %s (p %.2f)%s%s"):format(names[pred] or tostring(pred), p:item(),
      truth and ("; true: " .. truth) or "", target ~= pred and ("; explaining " .. (names[target] or target)) or "")
    local fig = viz.figure(disp, panels, {title = title, cell = 200})
    local file = ("panels_%d.png"):format(k)
    fig:save(out .. "/" .. file)
    local tl = {}
    for _, m in ipairs(methods) do tl[#tl + 1] = ("%s %.1f s"):format(METHODS[m].title, times[m]) end
    summary.panels[#summary.panels + 1] = {file = rel .. "/" .. file, title = it.path:match("([^/]+)$") .. ": " .. title,
      seconds = times, caption = "The image as the model sees it, then each method's attribution for the explained class ("
        .. table.concat(tl, ", ") .. ")."}
    print(("  %s -> %s"):format(it.path, out .. "/" .. file))
  end

  -- feature maps of the first image at the layer
  do
    local interpret = require "aviary.interpret"
    local _, x = prepare(items[1].path, cfg)
    local act = interpret.LayerActivation(net, layer):attribute(x:unsqueeze(1))
    local fig = viz.feature_maps(act, {max = 32, title = ("%s activations of %s (the 32 strongest channels)"):format(layer,
      items[1].path:match("([^/]+)$"))})
    fig:save(out .. "/feature_maps.png")
    summary.feature_maps = {file = rel .. "/feature_maps.png",
      caption = ("One image's activations at %s, each channel scaled to its own range, strongest first."):format(layer)}
  end

  -- feature visualisation of the layer's first channels
  if (o.optvis or 8) > 0 then
    local optvis = require "aviary.interpret.optvis"
    local image = require "aviary.image"
    local steps, C = o["optvis-steps"] or 256, cfg.DATA.crop
    local function normalise(u8) -- N x 3 x H x W uint8 -> the model's input
      local outs = {}
      for i = 1, u8:size(1) do outs[i] = image.to_float(u8:select(1, i), {mean = image.IMAGENET_MEAN, std = image.IMAGENET_STD}) end
      return av.stack(outs)
    end
    av.manual_seed(cfg.SYSTEM.seed)
    local noise = normalise((av.rand(8, 3, C, C) * 255):floor():byte())
    local real = {}
    for i = 1, math.min(8, #items) do local _, x = prepare(items[i].path, cfg); real[i] = x end
    if ds then
      for i = 1, #ds.samples, math.max(1, #ds.samples // 16) do
        if #real < 16 then local _, x = prepare(ds.samples[i].path, cfg); real[#real + 1] = x end
      end
    end
    real = av.stack(real)
    local imgs, caps, factors = {}, {}, {}
    local bar = not o.quiet and require("aviary.progress").bar(o.optvis, {label = "feature visualisation", unit = "ch"}) or nil
    for c = 1, o.optvis or 8 do
      local vis = optvis.render(net, optvis.objectives.channel(layer, c), {param = optvis.param.image(C), steps = steps,
        seed = c, progress = false})
      local a_vis = optvis.mean_activation(net, layer, c, normalise(vis))
      local a_noise = optvis.mean_activation(net, layer, c, noise)
      local a_real = optvis.mean_activation(net, layer, c, real)
      factors[c] = {channel = c, visualisation = a_vis, noise = a_noise, images = a_real}
      imgs[#imgs + 1] = vis:select(1, 1)
      caps[#caps + 1] = ("%s:%d  %.2f vs %.2f"):format(layer, c, a_vis, a_real)
      if bar then bar:update(1) end
    end
    if bar then bar:finish() end
    local fig = require("aviary.plot").image_grid{images = imgs, captions = caps, cols = math.min(4, #imgs), cell = 200,
      title = ("Feature visualisation of %s: channel, mean activation on its image vs on test images"):format(layer)}
    fig:save(out .. "/optvis.png")
    local fn, fr, nf = 0.0, 0.0, 0
    for _, f in ipairs(factors) do
      if f.noise > 0 and f.images > 0 then fn, fr, nf = fn + f.visualisation / f.noise, fr + f.visualisation / f.images, nf + 1 end
    end
    summary.optvis = {file = rel .. "/optvis.png", factors = factors,
      mean_factor_noise = nf > 0 and fn / nf or nil, mean_factor_images = nf > 0 and fr / nf or nil,
      caption = ("Images optimised (Lucent's FFT parameterisation, decorrelated colour, standard transforms, Adam lr 0.05, "
        .. "%d steps) to excite channels 1-%d of %s. On its image a channel's mean activation is %.1fx its mean on random "
        .. "noise and %.1fx its mean on test images (averaged over the channels)."):format(steps, #imgs, layer,
        nf > 0 and fn / nf or 0, nf > 0 and fr / nf or 0)}
    print(("feature visualisation: activation %.1fx that on noise, %.1fx that on test images"):format(
      nf > 0 and fn / nf or 0, nf > 0 and fr / nf or 0))
  end

  -- the pointing game
  if (o.pointing or 100) > 0 and ds then
    local boxes
    local root = o.boxes or (cfg.DATA.format == "cub" and cfg.DATA.dir or nil)
    if root then boxes = boxes_from(root) end
    if boxes then
      local samples = {}
      local step = math.max(1, #ds.samples // (o.pointing or 100))
      for i = 1, #ds.samples, step do
        if #samples < (o.pointing or 100) then samples[#samples + 1] = ds.samples[i] end
      end
      local pm = {}
      for _, m in ipairs({"gradcam", "integrated_gradients", "saliency"}) do pm[#pm + 1] = m end
      local rows, n = pointing_game(net, layer, cfg, samples, boxes, pm, o)
      summary.pointing = {rows = rows, n_images = n, caption = ("Each method's attribution maximum for the true class "
        .. "of %d test images, mapped back to the original image: the share inside the bird's bounding box, against the "
        .. "chance that a random point of the crop is."):format(n)}
      json.write(out .. "/pointing.json", summary.pointing)
      print(("pointing game over %d test images (a random point: %.1f%%):"):format(n, 100 * (rows[1] and rows[1].baseline or 0)))
      for _, row in ipairs(rows) do print(("  %-22s %5.1f%%"):format(row.method, 100 * row.score)) end
    else
      print("pointing game skipped: no bounding boxes (give --boxes <CUB_200_2011 folder>)")
    end
  end
  summary.seconds = av.clock() - t0
  json.write(out .. "/summary.json", summary)
  print(("wrote %s (%.0f s)"):format(out, summary.seconds))
  if run.exists(r.dir .. "/metrics.json") and out == r.dir .. "/interpret" then
    local html = require("aviary.evaluation.report").build(r.dir, {cfg = cfg, name = r.name})
    print("report: " .. html)
  end
  return 0
end

cli.run("interpret", usage, main)
