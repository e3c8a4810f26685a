--[[md
# 003 · Validate

A single accuracy hides most of what matters in a 200-way fine-grained task: which species are
learnt and which are not, which ones are mistaken for which, and whether the model's confidence
means anything. The study's validation notebook runs the trained model over the test split and
reports top-1 and top-5 accuracy, scikit-learn's classification report, a confusion matrix, the
worst classes, pictures of predictions and mistakes, and calibration.

This notebook does the same with `aviary.evaluation` — the module behind `recipes/evaluate.lua` —
on the best checkpoint of the run that `002_train.lua` wrote to `notebooks/out/runs/walkthrough/`
(`walkthrough-quick/` with `--quick`). Run 002 first; without its run folder this notebook stops
and says so. Like the recipe, it writes `predictions.csv`, `metrics.json`, the features,
`plots/` and a self-contained `report.html` into the run folder; notebook 004 reuses the features.

For scale: the study reached 82% top-1 with ResNet-152 and 85% with ResNeXt-101, fine-tuned from
ImageNet on the real photographs. A ResNet-18 trained from scratch for minutes on the synthetic
set gets about 30% (chance: 5%), with its mistakes mostly between sister species.
]]
NB = require("aviary.notebook").setup(...)
av = require "aviary"
run = require "aviary.run"
data = require "aviary.data"
ev = require "aviary.evaluation"
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

-- %%
--[[md
## Predict the test split

`run.open` reads the run folder (its resolved config, `history.json`, `best.json`); `run.model`
rebuilds the network from the config and loads the best checkpoint in evaluation mode;
`run.dataset(cfg, "test")` gives the test split with the test transform. `ev.predict` streams it
through the loader once, keeping the logits, the softmax and — through a forward hook on the
head's input (`avgpool` for ResNets) — the features that notebook 004 projects.
]]
r = run.open(RUN)
cfg = r.cfg
av.set_num_threads(cfg.SYSTEM.threads)
net, info = run.model(r, {checkpoint = "best"})
test_ds = run.dataset(cfg, "test")
run.check_classes(cfg, test_ds)
loader = data.DataLoader(test_ds, {batch_size = cfg.TRAIN.batch_size,
  num_workers = cfg.TRAIN.num_workers})
res = ev.predict(net, loader, {classes = test_ds.classes, progress = false})
loader:close()
print(("%s (%s), %s of epoch %s"):format(r.name, cfg.MODEL.name, info.file,
  tostring(info.epoch)))
print(("%d test images in %.1f s; features: %s, %d-d"):format(res.n, res.seconds, res.layer,
  res.features:size(2)))

-- %%
--[[md
## The numbers

`ev.summarize` computes everything with scikit-learn's definitions (tested against it): top-1 and
top-5, log loss, the expected calibration error (15 bins), macro and weighted precision, recall
and F1, per-class numbers and average precision, the most confused pairs.
]]
m = ev.summarize(res)
print(("top-1 %.1f%%   top-5 %.1f%%   (chance %.1f%% / %.1f%%)"):format(100 * m.top1,
  100 * m.top5, 100 / res.num_classes, 100 * math.min(1, 5 / res.num_classes)))
print(("macro F1 %.3f, weighted F1 %.3f, log loss %.3f, ECE %.3f, mean AP %.3f"):format(
  m.macro.f1, m.weighted.f1, m.log_loss, m.ece, m.mean_average_precision))
print("the study on the real CUB-200-2011: 82% (ResNet-152), 85% (ResNeXt-101) top-1")

-- %%
--[[md
scikit-learn's `classification_report`, as the study prints it (`metrics.classification_report`
gives the same text and its `output_dict`):
]]
print(m.report_text)

-- %%
--[[md
Like the recipe, we keep everything in the run folder: `predictions.csv` (one row per test image
with its top-5), `metrics.json`, the features as safetensors (PyTorch's `safetensors` reads
them) and the plots below in `plots/`.
]]
ev.write_predictions(RUN .. "/predictions.csv", res)
layer_file = "features/" .. res.layer:gsub("[^%w%._-]", "_") .. ".safetensors"
require("aviary.features").save(RUN .. "/" .. layer_file, res,
  {classes = json.encode(res.classes), model = cfg.MODEL.name, run = r.name})
plots = ev.plots(res, m, {dir = RUN .. "/plots", history = r.history, seed = cfg.SYSTEM.seed,
  grid = NB.quick and 16 or 24})
by_key = {}
for _, p in ipairs(plots) do by_key[p.key] = p end
function show(key)   -- one of the plots, with its caption
  local p = by_key[key]
  if p then display(p.file, {caption = p.title .. ": " .. p.caption}) end
end
print(("wrote %s/predictions.csv, %s and %d plots"):format(RUN, layer_file, #plots))

-- %%
--[[md
## Species by species

F1 per class, sorted, and the worst classes with their precision and recall. Low precision means
other species are predicted as this one; low recall means this one is predicted as others.
]]
show("per_class_f1")
show("worst_classes")
per = {}
for c, pc in ipairs(m.per_class) do
  per[c] = {class = res.names[c], precision = ("%.3f"):format(pc.precision),
            recall = ("%.3f"):format(pc.recall), f1 = ("%.3f"):format(pc.f1),
            support = pc.support, ap = ("%.3f"):format(pc.average_precision or 0)}
end
table.sort(per, function(a, b) return tonumber(a.f1) < tonumber(b.f1) end)
worst = {}
for i = 1, math.min(10, #per) do worst[i] = per[i] end
display(worst, {caption = "The 10 worst classes by F1",
  columns = {"class", "precision", "recall", "f1", "ap", "support"}})

-- %%
--[[md
## Confusion

Rows are true species, columns predicted ones, each row divided by its number of test images, so
the diagonal is the per-class recall. On CUB the off-diagonal mass sits in blocks of related
species (gulls, terns, sparrows, warblers); on the synthetic set, within each genus.
]]
show("confusion")
confused = {}
for i = 1, math.min(10, #m.most_confused) do
  local c = m.most_confused[i]
  confused[i] = {true_class = res.names[c["true"]], predicted = res.names[c.predicted],
                 count = c.count, rate = ("%.2f"):format(c.rate)}
end
display(confused, {caption = "The most confused pairs (count: test images of the true class "
  .. "predicted as the other)", columns = {"true_class", "predicted", "count", "rate"}})

-- %%
--[[md
## Predictions and mistakes

A random sample of test images with their true and predicted species (green right, red wrong),
then the mistakes the model was surest of — often the most instructive pictures: an occluded
bird, an unusual pose, or a genuinely similar sister species.
]]
show("predictions")
show("errors")

-- %%
--[[md
## Confidence and calibration

Is a 0.9 softmax right 90% of the time? The histogram splits the top-1 probability by right and
wrong predictions; the reliability diagram bins it and plots accuracy against confidence (the
diagonal is perfect calibration; the expected calibration error is the weighted gap). The
precision-recall curves show the best and worst classes one-vs-rest.
]]
show("scores")
show("reliability")
show("pr_curves")
show("curves")

-- %%
--[[md
## The report

`metrics.json` and `plots/index.json` feed `aviary.evaluation.report`, which writes
`report.html` into the run folder: one self-contained page (images inlined) with a sortable
per-class table and a confusion matrix that names the classes under the mouse. Notebooks 004 and
005 add their sections to it.
]]
ev.write_metrics(RUN .. "/metrics.json", m, {features_file = layer_file, run = r.name,
  model = cfg.MODEL.name, checkpoint = info.file, epoch = info.epoch, split = "test",
  data_dir = cfg.DATA.dir, classes = res.classes, layer = res.layer,
  feature_dim = res.features:size(2), seconds = res.seconds,
  created = os.date("!%Y-%m-%dT%H:%M:%SZ"), aviary_version = av._VERSION})
index = {}
for _, p in ipairs(plots) do
  index[#index + 1] = {key = p.key, file = p.file:match("([^/]+)$"), title = p.title,
                       caption = p.caption, figure_box = p.figure_box}
end
json.write(RUN .. "/plots/index.json", index)
html = require("aviary.evaluation.report").build(RUN, {cfg = cfg, name = r.name})
print("report: " .. html)
