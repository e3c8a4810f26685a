--[[md
# 001 · Visualise the data

Before training, the study looks at what it is training on: how many images each species has,
how large the photographs are, what the birds look like, and what the training augmentations do
to them. This notebook draws the same pictures with `aviary.plot`, `aviary.image` and the data
pipeline that training uses (`aviary.data`).

It reads the layout that `000_organise_data.lua` prepares; run that notebook first (this one
stops with a message saying so when the layout is missing). The data setting below is the same
in every walkthrough: the real CUB-200-2011 when `data/CUB_200_2011` (or `$AVIARY_CUB`) holds
it, else the synthetic 20-species stand-in of `make demo`.
]]
NB = require("aviary.notebook").setup(...)
av = require "aviary"
data = require "aviary.data"
image = require "aviary.image"
plot = require "aviary.plot"
ev = require "aviary.evaluation"

-- %%
--[[md
## The setting
]]
CUB = os.getenv("AVIARY_CUB")        -- the extracted CUB_200_2011 folder; nil: synthetic
W = require("aviary.notebook.walkthrough").setting(NB, CUB)
CUB, SOURCE, IMAGES, DATA_DIR, RUN, exists = W.cub, W.source, W.images, W.data_dir, W.run, W.exists
W.need_data()
print(("data: %s (%s)"):format(DATA_DIR, CUB and "the real CUB-200-2011" or "synthetic"))

-- %%
--[[md
## Class balance

`aviary.data.ImageFolder` lists `train/<class>/` and `test/<class>/`: the classes are the sorted
folder names and the labels 1-based. CUB is nearly balanced (about 30 training images per
species, a few with fewer), so plain accuracy is a fair summary; the per-class numbers of
notebook 003 show where it hides differences.
]]
train_ds = data.ImageFolder(DATA_DIR .. "/train")
test_ds = data.ImageFolder(DATA_DIR .. "/test")
names = ev.display_names(train_ds.classes)
ntrain, ntest = train_ds:class_counts(), test_ds:class_counts()
print(("%d classes; %d training and %d test images"):format(#train_ds.classes,
  train_ds:size(), test_ds:size()))
if #names <= 40 then
  fig = plot.grouped_bars{categories = names,
    series = {{label = "train", values = ntrain}, {label = "test", values = ntest}},
    title = "Images per species", ylabel = "images", width = 1100, height = 520,
    legend = "lower right"}
else
  local total = {}
  for c = 1, #names do total[c] = ntrain[c] + ntest[c] end
  fig = plot.bars{labels = names, values = total, sort = "desc", width = 1200, height = 460,
    color = "C0",
    title = "Images per species (train + test), sorted", ylabel = "images"}
end
display(fig, {caption = "Training and test images of each species"})

-- %%
--[[md
## Image sizes

The study resizes every photograph before cropping it, so the sizes matter: how much detail is
lost, and whether small images get upsampled. `image.probe` reads only the JPEG header. The real
photographs are mostly 500 pixels on the long side; the synthetic ones about 250x188 (±15%, one
in seven portrait).
]]
ws, hs = {}, {}
t0 = av.clock()
for _, ds in ipairs({train_ds, test_ds}) do
  for _, s in ipairs(ds.samples) do
    local w, h = image.probe(s.path)
    ws[#ws + 1], hs[#hs + 1] = w, h
  end
end
table.sort(ws); table.sort(hs)
print(("%d headers read in %.2f s"):format(#ws, av.clock() - t0))
print(("width %d..%d (median %d), height %d..%d (median %d)"):format(ws[1], ws[#ws],
  ws[#ws // 2 + 1], hs[1], hs[#hs], hs[#hs // 2 + 1]))
display(plot.hist{series = {{values = ws, label = "width"}, {values = hs, label = "height"}},
  bins = 30, title = "Image sizes", xlabel = "pixels", ylabel = "images", width = 900,
  height = 440}, {caption = "Widths and heights of all the images"})

-- %%
--[[md
## The birds

One training image of each species (the first 20 species), with its name. Sister species share
a body plan and colours and differ in a detail, which is what makes CUB a *fine-grained* task.
]]
seen, imgs, caps = {}, {}, {}
for _, s in ipairs(train_ds.samples) do
  if not seen[s.target] and #imgs < 20 then
    seen[s.target] = true
    local img = image.load(s.path)
    imgs[#imgs + 1] = image.center_crop(image.resize(img, 160), 160)
    caps[#caps + 1] = ev.short_name(names[s.target], 24)
  end
end
display(plot.image_grid{images = imgs, captions = caps, cols = 5, cell = 170,
  title = "One bird per species"}, {caption = "The first training image of each species"})

-- %%
--[[md
Each image also has the bird's bounding box (`bounding_boxes.txt`), which notebook 005 uses to
check whether an attribution points at the bird. `aviary.data.cub.read` gives it as `bbox`.
]]
info = require("aviary.data.cub").read(SOURCE, {check_images = false})
cub_names = {}
for _, c in ipairs(info.classes) do cub_names[c.id] = c.name end
cub_names = ev.display_names(cub_names)
boxed, bcaps = {}, {}
for i = 1, #info.images, math.max(1, #info.images // 8) do
  local im = info.images[i]
  if #boxed < 8 then
    local img = image.load(SOURCE .. "/images/" .. im.path)
    image.draw_box(img, im.bbox, {color = "red", width = 3})
    boxed[#boxed + 1] = img
    bcaps[#bcaps + 1] = ev.short_name(cub_names[im.class_id], 24)
  end
end
display(plot.image_grid{images = boxed, captions = bcaps, cols = 4, cell = 220,
  title = "Bounding boxes"}, {caption = "Images of the archive with their bird's box"})

-- %%
--[[md
## Augmentation

The study trains with `RandomResizedCrop` (a random 8-100% of the area, aspect ratio 3/4 to 4/3,
resized to the input size) and a random horizontal flip, and tests with a resize of the short
side and a centre crop; its "aggressive" variant adds a random perspective and a rotation of up to
10°. These are `data.transforms.preset(name, split)`; the pipelines run in C in the loader's
threads, and each sample's randomness depends only on (seed, epoch, index), so `ds:get(i, {epoch
= e})` shows exactly what epoch `e` trains on. Shown at 112 pixels, the size notebook 002 trains
at; the tensors are normalised with ImageNet's mean and standard deviation, undone here for display.
]]
CROP, RESIZE = 112, 128
mean = av.tensor(image.IMAGENET_MEAN):view(3, 1, 1)
std = av.tensor(image.IMAGENET_STD):view(3, 1, 1)
function unnormalise(x) return (x * std + mean):clamp(0, 1) end

function views(preset, split, index, n)
  local tf = data.transforms.preset(preset, split, {size = CROP, resize = RESIZE})
  local ds = data.ImageFolder(DATA_DIR .. "/train", {transform = tf, seed = 1})
  local out = {}
  for e = 1, n do out[e] = unnormalise(ds:get(index, {epoch = e - 1}).input) end
  return out
end
print(data.transforms.preset("default", "train", {size = CROP, resize = RESIZE}))
print(data.transforms.preset("aggressive", "train", {size = CROP, resize = RESIZE}))
print(data.transforms.preset("default", "test", {size = CROP, resize = RESIZE}))
idx = 1
vi, vc = {}, {}
vi[1], vc[1] = views("default", "test", idx, 1)[1], "test transform"
for e, x in ipairs(views("default", "train", idx, 7)) do
  vi[#vi + 1], vc[#vc + 1] = x, ("default #%d"):format(e)
end
for e, x in ipairs(views("aggressive", "train", idx, 8)) do
  vi[#vi + 1], vc[#vc + 1] = x, ("aggressive #%d"):format(e)
end
display(plot.image_grid{images = vi, captions = vc, cols = 8, cell = 130,
  title = "One image: the test view, then epochs 1-7 (default) and 1-8 (aggressive)"},
  {caption = "What the network sees of one image: the test view, one view per epoch"})

-- %%
--[[md
## A training batch

The `DataLoader` decodes, augments and stacks images in worker threads (`num_workers`), shuffling
each epoch. One batch of 16, as the network receives it: a `16 x 3 x 112 x 112` float tensor and
16 labels.
]]
tf = data.transforms.preset("default", "train", {size = CROP, resize = RESIZE})
loader = data.DataLoader(data.ImageFolder(DATA_DIR .. "/train", {transform = tf}),
  {batch_size = 16, shuffle = true, num_workers = 2, seed = 1})
for b in loader:iter() do batch = b break end
loader:close()
print(("input %s %s, target %s"):format(batch.input:dtype(),
  table.concat(batch.input:size(), "x"), table.concat(batch.target:size(), "x")))
bi, bc = {}, {}
targets = batch.target:tolist()
for i = 1, batch.input:size(1) do
  bi[i] = unnormalise(batch.input[i])
  bc[i] = ev.short_name(names[targets[i]], 20)
end
display(plot.image_grid{images = bi, captions = bc, cols = 8, cell = 130,
  title = "A shuffled, augmented training batch"},
  {caption = "The first training batch with its labels"})

-- %%
--[[md
Next: `002_train.lua` trains a ResNet on these images.
]]
