--[[md
# 004 · Feature maps and the feature manifold

What has the network learnt to compute? The study answers in two ways. First it looks *inside*
for one image: the activations ("feature maps") of successive stages, from edge and colour
detectors in the first convolution to coarse, class-specific patterns in the last stage. Then it
looks at the whole test split *through* the network: each image becomes the 512-dimensional
vector (2048 for ResNet-50/152) that the classifier head reads, and PCA and t-SNE project these
vectors to two dimensions, where species the network tells apart form their own clusters.

Here: `aviary.interpret.LayerActivation` and `aviary.interpret.visualize.feature_maps` for the
maps; `aviary.evaluation.manifold` (PCA and t-SNE in C, `aviary.manifold`, equal to
scikit-learn's) for the projections, with the study's t-SNE settings (perplexity 50, learning
rate 150, 1000 iterations). It uses the run of `002_train.lua` (run it first: this notebook stops
and says so otherwise) and the features `003_validate.lua` saved there (computed again when 003
has not run).
]]
NB = require("aviary.notebook").setup(...)
av = require "aviary"
run = require "aviary.run"
data = require "aviary.data"
ev = require "aviary.evaluation"
features = require "aviary.features"
manifold = require "aviary.manifold"
interpret = require "aviary.interpret"
viz = require "aviary.interpret.visualize"
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
if NB.quick then pcall(av.conv2d_algorithm, "onednn") end
r = run.open(RUN)
cfg = r.cfg
av.set_num_threads(cfg.SYSTEM.threads)
net, info = run.model(r, {checkpoint = "best"})
test_ds = run.dataset(cfg, "test")
names = ev.display_names(test_ds.classes)
print(("%s: %s, %s; %d test images"):format(r.name, cfg.MODEL.name, info.file,
  test_ds:size()))

-- %%
--[[md
## Feature maps

One test image through the network. A ResNet-18 is a stem (`conv1`, a 7x7 convolution of stride
2, then batch norm, ReLU and a max-pool) and four stages (`layer1`..`layer4`); each stage after
the first halves the resolution and doubles the channels (64, 128, 256, 512).
`LayerActivation` records a layer's output with a forward hook; each panel is one channel,
scaled to its own range, the 16 most active first.
]]
sample = test_ds.samples[1]
x = test_ds:get(1).input:unsqueeze(1)
pred = av.no_grad(function() return net(x) end)
_, k = pred:max(2)
print(("%s: true %s, predicted %s"):format(sample.path:match("([^/]+)$"), names[sample.target],
  names[k:item()]))
shown = image.center_crop(image.resize(image.load(sample.path), cfg.DATA.resize),
  cfg.DATA.crop)
display(shown, {caption = "The input, as the test transform crops it (not normalised)"})

-- %%
for _, layer in ipairs({"conv1", "layer1", "layer2", "layer3", "layer4"}) do
  local act = interpret.LayerActivation(net, layer):attribute(x)
  local fig = viz.feature_maps(act, {max = 16, cols = 8, cell = 96,
    title = ("%s: %d channels of %dx%d, the 16 most active"):format(layer, act:size(2),
      act:size(3), act:size(4))})
  display(fig, {caption = ("Activations of %s"):format(layer)})
end

-- %%
--[[md
The early maps are still pictures of the bird — edges, colour blobs, the branch. By `layer4` the
map is a few pixels square (112/32 = 4 at the demo's resolution; 7 at the study's 224) and each
channel responds to a part or a pattern wherever it is: these channels, averaged over the map,
are the features the head classifies.

## The features of the test split

`003_validate.lua` saved them with `features.save` (safetensors: `features`, `labels`, `logits`,
the image paths in the metadata); `features.load` reads them back. When 003 has not run we
compute them with `ev.predict`, the same hooked pass.
]]
ok, m3 = pcall(json.read, RUN .. "/metrics.json")
file = ok and m3.features_file and (RUN .. "/" .. m3.features_file) or nil
if file and exists(file) then
  local f = features.load(file)
  local _, p = f.logits:max(2)
  res = {features = f.features, labels = f.labels, logits = f.logits, paths = f.paths,
         layer = f.layer, preds = p:view(-1):tolist(), classes = test_ds.classes,
         names = names, num_classes = #test_ds.classes, n = f.features:size(1)}
  print("read " .. file)
else
  local loader = data.DataLoader(test_ds, {batch_size = cfg.TRAIN.batch_size,
    num_workers = cfg.TRAIN.num_workers})
  res = ev.predict(net, loader, {classes = test_ds.classes, progress = false})
  loader:close()
  print(("computed the features of %d test images in %.1f s"):format(res.n, res.seconds))
end
print(("features: %d images x %d dimensions (%s)"):format(res.features:size(1),
  res.features:size(2), res.layer))

-- %%
--[[md
## PCA and t-SNE

PCA is linear: the two directions of largest variance, and how much of it they hold. t-SNE is
not: it keeps each point's nearest neighbours together and says little about distances between
clusters, so read it for *which* images group, not *how far apart* groups are. The collage places
test thumbnails at their t-SNE positions (green frame: predicted right, red: wrong).
]]
t0 = av.clock()
ITER = NB.quick and 500 or 1000    -- t-SNE iterations (the first 250 exaggerate the clusters)
mplots, minfo = ev.manifold(res, {dir = RUN .. "/plots", seed = cfg.SYSTEM.seed,
  collage = NB.quick and 120 or 600,
  tsne = {perplexity = 50, learning_rate = 150, n_iter = ITER}})
evr = minfo.pca_explained_variance_ratio
print(("PCA: the first two components hold %.1f%% and %.1f%% of the variance"):format(
  100 * evr[1], 100 * evr[2]))
if minfo.tsne then
  print(("t-SNE: perplexity %g, KL divergence %.3f, %.1f s (%.1f s in all)"):format(
    minfo.tsne.perplexity, minfo.tsne.kl_divergence or 0 / 0, minfo.tsne.seconds,
    av.clock() - t0))
end
for _, p in ipairs(mplots) do display(p.file, {caption = p.title .. ": " .. p.caption}) end

-- %%
--[[md
## What the network adds

The same t-SNE on the raw pixels (each test image resized to 32x32, 3,072 numbers) for
comparison: without the network, images group by background and colour, not by species. The
trustworthiness score (1.0: every embedded neighbourhood is a true neighbourhood) says how
faithfully each embedding keeps local structure; the colours say whether that structure is the
species. (On the synthetic set the pixels split by background — sky, foliage, water — while the
features separate the genera cleanly but still mix sister species within each, as the confusion
matrix of notebook 003 showed.)
]]
pix = {}
for i, s in ipairs(test_ds.samples) do
  local img = image.center_crop(image.resize(image.load(s.path), 32), 32)
  pix[i] = image.to_float(img):reshape(-1)
end
P = av.stack(pix)
labels = res.labels:tolist()
gnames = {}
for c = 1, #names do gnames[c] = ev.short_name(names[c], 26) end
topts = {perplexity = math.min(50, (P:size(1) - 1) / 3), learning_rate = 150, n_iter = ITER,
  seed = 1}
Yp = manifold.tsne(P, topts)
Yf = manifold.tsne(res.features, topts)
print(("trustworthiness (5 neighbours): pixels %.3f, features %.3f"):format(
  manifold.trustworthiness(P, Yp, {n_neighbors = 5}),
  manifold.trustworthiness(res.features, Yf, {n_neighbors = 5})))
fig = plot.figure{width = 1200, height = 560, cols = 2,
  title = "t-SNE of the test split: raw pixels vs the network's features"}
fig:axes(1):scatter(Yp:select(2, 1), Yp:select(2, 2), {groups = labels, size = 3,
  legend = false})
fig:axes(1):set{title = "pixels (32x32x3)"}
fig:axes(2):scatter(Yf:select(2, 1), Yf:select(2, 2), {groups = labels, group_names = gnames,
  size = 3, legend = false})
fig:axes(2):set{title = ("%s features (%d-d)"):format(res.layer, res.features:size(2))}
display(fig, {caption = "Same images, same colours (one per species)"})

-- %%
--[[md
The manifold plots go into the run's `report.html` too (its Feature manifold section).
]]
oki, index = pcall(json.read, RUN .. "/plots/index.json")
keep = {}
for _, p in ipairs(oki and index or {}) do
  if p.key ~= "pca" and p.key ~= "tsne" and p.key ~= "tsne_collage" then keep[#keep + 1] = p end
end
for _, p in ipairs(mplots) do
  keep[#keep + 1] = {key = p.key, file = p.file:match("([^/]+)$"), title = p.title,
                     caption = p.caption}
end
if ok then
  json.write(RUN .. "/plots/index.json", keep)
  m3.manifold = minfo
  json.write(RUN .. "/metrics.json", m3)
  local html = require("aviary.evaluation.report").build(RUN, {cfg = cfg, name = r.name})
  print("report: " .. html)
else
  print("(run 003_validate.lua to get the report)")
end
