--[[md
# 005 · Attributions and feature visualisation

Is the network right for the right reasons? The study asks Captum which pixels drive a
prediction — saliency, integrated gradients, GradientShap, occlusion, Grad-CAM and Guided
Grad-CAM — and asks Lucent what a neuron responds to, by optimising an image to excite it.
`aviary.interpret` has the same methods with Captum's meanings, options and defaults (checked
against PyTorch autograd), `aviary.interpret.visualize` draws Captum's panels, and
`aviary.interpret.optvis` is Lucent's `render_vis`.

Attributions need a reference for *right*: CUB's bounding boxes. The pointing game asks whether an
attribution map's maximum falls inside the bird's box; `recipes/interpret.lua` plays it, and this
notebook runs it at the end, which also adds an Interpretation section to the run's `report.html`.

It uses the run of `002_train.lua` (run it first: this notebook stops and says so otherwise).
With `--quick` everything is cut down (one image, few integration steps and samples, one
visualised channel, 8 optimisation steps): a smoke test. The full run takes a few minutes on two
cores; the full settings are in `STEPS` below.
]]
NB = require("aviary.notebook").setup(...)
av = require "aviary"
run = require "aviary.run"
ev = require "aviary.evaluation"
interpret = require "aviary.interpret"
viz = require "aviary.interpret.visualize"
optvis = require "aviary.interpret.optvis"
image = require "aviary.image"
plot = require "aviary.plot"
json = require "aviary.json"

-- %%
--[[md
## The setting
]]
CUB = os.getenv("AVIARY_CUB")        -- the extracted CUB_200_2011 folder; nil: synthetic
W = require("aviary.notebook.walkthrough").setting(NB, CUB)
CUB, SOURCE, IMAGES, DATA_DIR, RUN, exists = W.cub, W.source, W.images, W.data_dir, W.run, W.exists
W.need_run()
-- attribution batches come in many shapes: take oneDNN's convolutions rather than timing
-- both paths on each new shape
pcall(av.conv2d_algorithm, "onednn")
-- how much work: the study's settings (fewer images and steps), or a smoke test
STEPS = NB.quick and {images = 1, ig = 8, shap = 8, optvis = 1, optvis_steps = 8, pointing = 5}
  or {images = 2, ig = 50, shap = 75, optvis = 3, optvis_steps = 64, pointing = 24}
r = run.open(RUN)
cfg = r.cfg
av.set_num_threads(cfg.SYSTEM.threads)
net, info = run.model(r, {checkpoint = "best"})
test_ds = run.dataset(cfg, "test")
names = ev.display_names(test_ds.classes)
LAYER = "layer4"   -- the last convolutional stage: Grad-CAM's layer, and the one visualised
print(("%s: %s, %s; %d px inputs; Grad-CAM at %s"):format(r.name, cfg.MODEL.name, info.file,
  cfg.DATA.crop, LAYER))

-- %%
--[[md
## The images

The first test image of a few species. `test_ds:get(i)` gives exactly the network's input
(resize, centre crop, ImageNet normalisation); for the panels we crop the picture the same way
without normalising. Attributions explain the *predicted* class, as in the study.
]]
items = {}
seen = {}
for i, s in ipairs(test_ds.samples) do
  if not seen[s.target] and #items < STEPS.images then
    seen[s.target] = true
    local x = test_ds:get(i).input:unsqueeze(1)
    local probs = av.no_grad(function() return av.softmax(net(x):double(), 2) end)
    local p, k = probs:max(2)
    local picture = image.resize(image.load(s.path), cfg.DATA.resize)
    items[#items + 1] = {path = s.path, target = s.target, x = x, pred = k:item(), p = p:item(),
                         picture = image.center_crop(picture, cfg.DATA.crop)}
  end
end
rows = {}
for i, it in ipairs(items) do
  rows[i] = {image = it.path:match("([^/]+)$"), true_class = names[it.target],
             predicted = names[it.pred], probability = ("%.2f"):format(it.p)}
end
display(rows, {caption = "The images explained below",
  columns = {"image", "true_class", "predicted", "probability"}})

-- %%
--[[md
## Six methods

- **Saliency**: the gradient of the class score with respect to the pixels (its magnitude).
- **Integrated gradients**: the gradient averaged along the straight path from a black image to
  the input, times the difference — attributions that add up to the score's change (the
  convergence delta in the table below measures how nearly).
- **GradientShap**: integrated gradients' expectation over random baselines and noisy inputs;
  the study's settings: baselines `0·x` and `1·x`, 75 samples, noise 1e-4.
- **Occlusion**: slide a 15x15 patch of zeros (stride 8) over the image and record how much the
  score drops — no gradients at all.
- **Grad-CAM**: `layer4`'s channels weighted by their average gradient, upsampled; coarse but
  class-discriminative. **Guided Grad-CAM** multiplies it with guided backpropagation.

Each entry says how to draw its map (Captum's `visualize_image_attr` methods and signs).
]]
METHODS = {
  {title = "Saliency", method = "heat_map", sign = "absolute_value", run = function(x, t)
    return interpret.Saliency(net):attribute(x, {target = t})
  end},
  {title = "Integrated gradients", method = "blended_heat_map", sign = "absolute_value",
   run = function(x, t)
    local a, delta = interpret.IntegratedGradients(net):attribute(x, {target = t,
      n_steps = STEPS.ig, internal_batch_size = 25, return_convergence_delta = true})
    return a, ("convergence delta %.2g"):format(delta:abs():max():item())
  end},
  {title = "GradientShap", method = "blended_heat_map", sign = "absolute_value", run = function(x, t)
    return interpret.GradientShap(net):attribute(x, {baselines = av.cat({x * 0, x * 1}, 1),
      n_samples = STEPS.shap, stdevs = 1e-4, target = t, seed = 1})
  end},
  {title = "Occlusion", method = "blended_heat_map", sign = "positive", run = function(x, t)
    return interpret.Occlusion(net):attribute(x, {sliding_window_shapes = {3, 15, 15},
      strides = {3, 8, 8}, baselines = 0, target = t, perturbations_per_eval = 16})
  end},
  {title = "Grad-CAM", method = "blended_heat_map", sign = "positive", run = function(x, t)
    local cam = interpret.LayerGradCam(net, LAYER):attribute(x, {target = t,
      relu_attributions = true})
    return interpret.interpolate(cam, {x:size(3), x:size(4)}, "bilinear")
  end},
  {title = "Guided Grad-CAM", method = "heat_map", sign = "absolute_value", run = function(x, t)
    return interpret.GuidedGradCam(net, LAYER):attribute(x, {target = t})
  end},
}
timing = {}
for k, it in ipairs(items) do
  local panels = {}
  for _, m in ipairs(METHODS) do
    local t0 = av.clock()
    local a, note = m.run(it.x, it.pred)
    timing[#timing + 1] = {image = k, method = m.title, note = note or "",
                           seconds = ("%.2f"):format(av.clock() - t0)}
    panels[#panels + 1] = {attr = a:select(1, 1), method = m.method, sign = m.sign, title = m.title}
  end
  local title = ("predicted %s (p %.2f); true: %s"):format(names[it.pred], it.p, names[it.target])
  display(viz.figure(it.picture, panels, {title = title, cell = 200}),
    {caption = it.path:match("([^/]+)$") .. ": " .. title})
end
display(timing, {caption = "Seconds per method and image",
  columns = {"image", "method", "seconds", "note"}})

-- %%
--[[md
## Grad-CAM for another class

Attributions are per class: asking Grad-CAM about the true species instead of the predicted one
(or about a sister species) shows which evidence the network weighs for each. For a correct
prediction the two coincide, so we then ask about the runner-up class.
]]
it = items[1]
probs = av.no_grad(function() return av.softmax(net(it.x):double(), 2) end)
_, top = probs:topk(2, 2)
top = top:view(-1):tolist()
plist = probs:view(-1):tolist()
classes = {it.pred, it.target ~= it.pred and it.target or top[2]}
panels = {}
for _, c in ipairs(classes) do
  local cam = interpret.LayerGradCam(net, LAYER):attribute(it.x, {target = c,
    relu_attributions = true})
  cam = interpret.interpolate(cam, {it.x:size(3), it.x:size(4)}, "bilinear")
  panels[#panels + 1] = {attr = cam:select(1, 1), method = "blended_heat_map", sign = "positive",
    title = ("%s (p %.2f)"):format(ev.short_name(names[c], 18), plist[c])}
end
display(viz.figure(it.picture, panels, {title = "Grad-CAM for two classes", cell = 220}),
  {caption = "The same image explained for two different classes"})

-- %%
--[[md
## Feature visualisation

Lucent's recipe: parameterise an image in a decorrelated Fourier basis, apply random jitter,
scaling and rotation at every step (so the result does not exploit single pixels), and run Adam to
maximise one channel's mean activation. The caption compares that channel's mean activation on
its own image with its mean over test images: a working visualisation excites the channel far
more than any real input does.
]]
-- the jittered inputs change size at every step: im2col has no per-shape set-up cost
pcall(av.conv2d_algorithm, "im2col")
C = cfg.DATA.crop
real = {}
for i = 1, test_ds:size(), math.max(1, test_ds:size() // 16) do
  if #real < 16 then real[#real + 1] = test_ds:get(i).input end
end
real = av.stack(real)
function normalise(u8)   -- N x 3 x H x W uint8 -> the network's input
  local out = {}
  for i = 1, u8:size(1) do
    out[i] = image.to_float(u8:select(1, i), {mean = image.IMAGENET_MEAN, std = image.IMAGENET_STD})
  end
  return av.stack(out)
end
vis, caps = {}, {}
t0 = av.clock()
for c = 1, STEPS.optvis do
  local img = optvis.render(net, optvis.objectives.channel(LAYER, c),
    {param = optvis.param.image(C), steps = STEPS.optvis_steps, seed = c, progress = false})
  local a_vis = optvis.mean_activation(net, LAYER, c, normalise(img))
  local a_real = optvis.mean_activation(net, LAYER, c, real)
  vis[#vis + 1] = img:select(1, 1)
  caps[#caps + 1] = ("%s:%d  %.2f vs %.2f"):format(LAYER, c, a_vis, a_real)
end
print(("%d channels, %d steps each, in %.0f s"):format(STEPS.optvis, STEPS.optvis_steps,
  av.clock() - t0))
display(plot.image_grid{images = vis, captions = caps, cols = math.min(4, #vis), cell = 200,
  title = ("Channels of %s: mean activation on its image vs on test images"):format(LAYER)},
  {caption = "Images optimised to excite single channels of " .. LAYER})

-- %%
--[[md
The same optimisation on a class logit asks what the network thinks a species looks like. For a
network trained from scratch on a few hundred synthetic images, expect the colours and textures
of the species' plumage rather than a bird.
]]
cl, cc = {}, {}
for _, c in ipairs({items[1].target, items[1].target % #names + 1}) do
  local img = optvis.render(net, optvis.objectives.class_logit(c),
    {param = optvis.param.image(C), steps = STEPS.optvis_steps, seed = 1, progress = false})
  cl[#cl + 1], cc[#cc + 1] = img:select(1, 1), ev.short_name(names[c], 26)
end
display(plot.image_grid{images = cl, captions = cc, cols = 2, cell = 220,
  title = "Class visualisations"}, {caption = "Images optimised for two class logits"})
pcall(av.conv2d_algorithm, "onednn")

-- %%
--[[md
## The pointing game

For each of a few dozen test images (`recipes/interpret.lua --pointing N`), take the maximum of
the Grad-CAM, integrated-gradients and saliency maps for the true class, map it back to the
original photograph, and count how often it lands inside the bird's bounding box — against the
chance that a random point of the crop does. The recipe also writes `interpret/` in the run
folder (panels, feature maps, `pointing.json`, `summary.json`) and adds the Interpretation
section to `report.html`.
]]
cmd = ("%s/bin/aviary recipes/interpret.lua --run %s --n 1 --methods gradcam,"
  .. "integrated_gradients,saliency --n-steps %d --pointing %d --optvis 0 --boxes %s --quiet")
  :format(NB.root, RUN, STEPS.ig, STEPS.pointing, SOURCE)
print("$ " .. cmd:gsub("^.*/bin/aviary", "bin/aviary"))
t0 = av.clock()
p = io.popen(cmd .. " 2>&1")
print(p:read("a"))
assert(p:close(), "recipes/interpret.lua failed (see above)")
pg = json.read(RUN .. "/interpret/pointing.json")
rows = {}
for _, row in ipairs(pg.rows) do
  rows[#rows + 1] = {method = row.method, hits = ("%d / %d"):format(row.hits, row.n),
                     score = ("%.0f%%"):format(100 * row.score),
                     random_point = ("%.0f%%"):format(100 * row.baseline)}
end
display(rows, {caption = ("Pointing game on %d test images (%.0f s)"):format(pg.n_images,
  av.clock() - t0), columns = {"method", "hits", "score", "random_point"}})
