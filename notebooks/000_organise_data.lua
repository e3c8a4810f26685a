--[[md
# 000 · Organise the data

The study starts from the CUB-200-2011 archive: 11,788 photographs of 200 North American bird
species, split by the dataset's authors into 5,994 training and 5,794 test images, with one
bounding box per bird. Its first notebook turns the archive's text files into the folder layout
that the training code reads — `train/<species>/*.jpg` and `test/<species>/*.jpg` — and checks
the counts. This notebook does the same with `aviary.data.cub`, the module behind
`recipes/prepare_cub.lua`.

**The data.** The first code cells hold the one setting of these walkthroughs: where the real
archive is. Put the extracted `CUB_200_2011` folder at `data/CUB_200_2011` (or point the
environment variable `AVIARY_CUB` at it) and every notebook uses it. Without it they use a
*synthetic* CUB-200-2011, drawn on the spot by `aviary.data.synthetic`: 20 invented species in
genera of two to four, 60 images each at about 250x188, written in CUB's exact file format with
its split and bounding boxes — the same set `make demo` draws, and reused if it is already there.
The synthetic birds are cartoons (ellipses, polygons, patterns over sky, foliage or water
backgrounds); sister species differ only in a cap, a wing bar or the shape of a beak. They
exercise every step of the study, but the accuracies they give are not comparable with the
study's 82% (ResNet-152) and 85% (ResNeXt-101) on the real photographs.

**Outputs**, which the later notebooks read: the prepared layout in `data/images` (real) or
`data/demo_images` (synthetic), and with `--quick` a small subset beside it (10 species, 12
training and 12 test images each: `data/images_quick` or `data/demo_images_quick`, links). Run this notebook first;
the others stop with a message that says so when its output is missing.
]]
NB = require("aviary.notebook").setup(...)
av = require "aviary"
cub = require "aviary.data.cub"

-- %%
--[[md
## The setting

`CUB` is the extracted archive, or `nil` for the synthetic stand-in. Everything else follows from
it: `SOURCE` (a folder in CUB's format), `IMAGES` (the study's layout, prepared from it),
`DATA_DIR` (what the notebooks train and test on: `IMAGES`, or with `--quick` a 10-species
subset of it) and `RUN` (where notebook 002 writes the trained model).
]]
CUB = os.getenv("AVIARY_CUB")        -- the extracted CUB_200_2011 folder; nil: synthetic
W = require("aviary.notebook.walkthrough").setting(NB, CUB)
CUB, SOURCE, IMAGES, DATA_DIR, RUN, exists = W.cub, W.source, W.images, W.data_dir, W.run, W.exists
print("data:   " .. (CUB and "the real CUB-200-2011"
                        or "the synthetic CUB-200-2011 stand-in (20 species)"))
print("source " .. SOURCE)
print("layout " .. IMAGES)
print("used   " .. DATA_DIR .. (NB.quick and " (--quick: a 10-species subset)" or ""))
print("run    " .. RUN)

-- %%
--[[md
## The archive

Without the real archive we draw the synthetic one now (about 10-20 seconds on two cores; skipped
when it is already there). `aviary.data.synthetic.generate` writes `images/`, `images.txt`,
`image_class_labels.txt`, `train_test_split.txt`, `classes.txt` and `bounding_boxes.txt`, as in
the real download. Every image depends only on the seed, so the set is the same everywhere.
]]
if not CUB and not exists(SOURCE .. "/images.txt") then
  local t0 = av.clock()
  local out = SOURCE:gsub("/CUB_200_2011$", "")
  local r = require("aviary.data.synthetic").generate({out = out, classes = 20,
    per_class = 60, size = "250x188", seed = 1, progress = false})
  print(("drew %d images (%d train, %d test) in %.1f s"):format(r.images, r.train, r.test,
    av.clock() - t0))
else
  print(SOURCE .. " is there")
end
for _, f in ipairs(cub.files) do
  print(("  %-24s %s"):format(f, exists(SOURCE .. "/" .. f) and "ok" or "missing"))
end

-- %%
--[[md
`cub.read` parses the five text files, checks that they agree (same images, known ids, class ids
1..N, a 0/1 split flag, numeric boxes, every listed file on disk) and returns one record per
image. Note the split file's convention: **1 means training, 0 means test**.
]]
t0 = av.clock()
info = cub.read(SOURCE)
print(("%d images of %d species: %d train, %d test (read and checked in %.2f s)"):format(
  #info.images, #info.classes, info.counts.train, info.counts.test, av.clock() - t0))
rows = {}
for i = 1, 6 do
  local im = info.images[i]
  local b = im.bbox
  rows[i] = {id = im.id, path = im.path, class_id = im.class_id,
             split = im.is_train and "train" or "test",
             bbox = ("x %.0f y %.0f w %.0f h %.0f"):format(b.x, b.y, b.w, b.h)}
end
display(rows, {caption = "The first records of the archive",
  columns = {"id", "path", "class_id", "split", "bbox"}})

-- %%
--[[md
Images per species and split. In the real set every species has about 30 training images and
the test split is almost as large (5,794 of 11,788) — few examples per class, which is why the
study fine-tunes ImageNet networks rather than training from scratch.
]]
per = {}
for _, c in ipairs(info.classes) do per[c.id] = {class = c.name, train = 0, test = 0} end
for _, im in ipairs(info.images) do
  local r = per[im.class_id]
  if im.is_train then r.train = r.train + 1 else r.test = r.test + 1 end
end
lo, hi = math.huge, 0
for _, r in ipairs(per) do lo, hi = math.min(lo, r.train), math.max(hi, r.train) end
print(("training images per species: %d to %d"):format(lo, hi))
shown = {}
for i = 1, math.min(8, #per) do shown[i] = per[i] end
display(shown, {caption = ("Images per split, the first %d of %d species"):format(#shown,
  #per), columns = {"class", "train", "test"}})

-- %%
--[[md
## The study's layout

`cub.prepare` writes `train/<class>/` and `test/<class>/` with hard links (no copies, no extra
disk), plus `train.txt`, `test.txt` (one `<path> <class id>` per image) and `classes.json`. It is
what `bin/aviary recipes/prepare_cub.lua --src=... --dst=...` runs; it is skipped when the layout
is already there (delete the folder to prepare it again).
]]
if not exists(IMAGES .. "/train.txt") then
  local r = cub.prepare(SOURCE, IMAGES, {mode = "link", progress = false})
  print(("prepared %s: train %d, test %d images, %d classes (mode %s)"):format(IMAGES,
    r.train, r.test, r.classes, r.mode))
else
  print(IMAGES .. " is there")
end
layout = require("aviary.json").read(IMAGES .. "/classes.json")
print(("%s/classes.json: %d classes, train %d, test %d"):format(IMAGES, #layout.classes,
  layout.counts.train, layout.counts.test))
p = io.popen("cd '" .. IMAGES .. "' && ls train | head -3 && echo ... && head -2 train.txt")
print(p:read("a"))
p:close()

-- %%
--[[md
## A quick subset

With `--quick` (continuous integration, or a first look) the walkthroughs train and test on the
first 10 species only, 12 training and 12 test images each. The subset is a folder of links into
the prepared layout, so it costs nothing; `aviary.data.ImageFolder` follows the links.
]]
if NB.quick then
  os.execute("rm -rf '" .. DATA_DIR .. "'")
  local abs = io.popen("cd '" .. IMAGES .. "' && pwd"):read("l")
  local data = require "aviary.data"
  local cmds = {}
  for _, split in ipairs({"train", "test"}) do
    local full = data.ImageFolder(IMAGES .. "/" .. split)
    local taken = {}
    for _, s in ipairs(full.samples) do
      local c = full.classes[s.target]
      if s.target <= 10 and (taken[c] or 0) < 12 then
        local dir = ("%s/%s/%s"):format(DATA_DIR, split, c)
        if not taken[c] then cmds[#cmds + 1] = "mkdir -p '" .. dir .. "'" end
        taken[c] = (taken[c] or 0) + 1
        local file = s.path:match("([^/]+)$")
        cmds[#cmds + 1] = ("ln -s '%s/%s/%s/%s' '%s/'"):format(abs, split, c, file, dir)
      end
    end
  end
  assert(os.execute(table.concat(cmds, " && ")))
  local ds = data.ImageFolder(DATA_DIR .. "/train")
  local dt = data.ImageFolder(DATA_DIR .. "/test")
  print(("%s: %d classes, %d train and %d test images"):format(DATA_DIR, #ds.classes,
    ds:size(), dt:size()))
else
  print("full run: the notebooks use all of " .. DATA_DIR)
end

-- %%
--[[md
Next: `001_visualise_data.lua` looks at the images, their sizes and the augmentations.
]]
