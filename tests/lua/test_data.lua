-- aviary.data: transforms declared as data, the C loader (determinism across
-- worker counts, shuffling, drop_last, the corrupt-file policies, shutdown),
-- ImageFolder, and comparisons with torchvision on the real photographs of
-- ../shared/photos.
--
-- Documented tolerances (see docs/data.md, "Transforms and the DataLoader"):
--  * Resize(256) + CenterCrop(224) + Normalize without DCT scaling: within one 8-bit level
--    (max |diff| <= 1/255/0.224 after normalisation, mean <= 1e-4); measured 0 (bit-exact).
--  * the same with DCT-domain scaling (the loader's default): max <= 2.0, mean <= 0.15
--    normalised units (the decoder's scaled IDCT is another low-pass filter); measured max 1.63,
--    mean 0.023-0.127.
--  * rotate, hflip, brightness, contrast, saturation, hue (PIL's 8-bit HSV): max <= 1/255,
--    mean <= 1e-4; perspective: mean <= 1e-4, max <= 0.35 (a few border pixels, where our
--    solve of the homography and torch's float32 lstsq put a sample on either side of the
--    image edge).
local av = require "aviary"
local data = require "aviary.data"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local PHOTOS = os.getenv("AVIARY_PHOTOS") or (av_test.root .. "/../shared/photos")
local HAVE_PHOTOS = io.open(PHOTOS .. "/eagle.jpg") ~= nil
-- the real photographs live beside the repository (../shared/photos); where a checkout has
-- none, the tests that read them are reported as skipped, never as passed
local function need_photos()
  if not HAVE_PHOTOS then skip("no test photos at " .. PHOTOS .. " (set AVIARY_PHOTOS to their folder)") end
end
local ST_DIR = here .. "/../parity"
local GOOD = {"chicken", "dog", "eagle", "giraffe", "horses", "person"}

local function sh(cmd) assert.truthy(os.execute(cmd), "command failed: " .. cmd) end
local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function diff(a, b)
  local d = (a:float() - b:float()):abs()
  return d:max():item(), d:mean():item()
end

-- a class-folder tree of copied photos: a/ (3 images), b/ (4 images), c/ (4 images incl. a PNG named .jpg)
local function make_tree(with_bad)
  need_photos()
  local root = av_test.tmpname("_imgfolder")
  sh("mkdir -p " .. q(root .. "/a") .. " " .. q(root .. "/b") .. " " .. q(root .. "/c"))
  local layout = {a = {"chicken", "dog", "eagle"}, b = {"giraffe", "horses", "person", "eagle_progressive"},
                  c = {"chicken_444", "eagle_gray", "giraffe_is_png", "eagle_cmyk"}}
  for cls, files in pairs(layout) do
    for _, f in ipairs(files) do sh(("cp %s %s"):format(q(PHOTOS .. "/" .. f .. ".jpg"), q(root .. "/" .. cls .. "/"))) end
  end
  sh("echo not-an-image > " .. q(root .. "/a/notes.txt"))
  if with_bad then sh(("cp %s %s"):format(q(PHOTOS .. "/dog_truncated.jpg"), q(root .. "/b/"))) end
  return root
end

local trees = {}
local function tree(with_bad)
  local k = with_bad and "bad" or "good"
  trees[k] = trees[k] or make_tree(with_bad)
  return trees[k]
end

local function same_tensor(a, b)
  if not av.is_tensor(a) or not av.is_tensor(b) then return false end
  local sa, sb = a:size(), b:size()
  if #sa ~= #sb then return false end
  for i = 1, #sa do if sa[i] ~= sb[i] then return false end end
  return a:numel() == 0 or (a:double() - b:double()):abs():max():item() == 0
end

local function batches(loader)
  local out = {}
  for b in loader:iter() do out[#out + 1] = b end
  return out
end

local function same_batches(a, b, what)
  assert.equal(#a, #b, what .. ": batch count")
  for i = 1, #a do
    assert.same(a[i].path, b[i].path, what .. ": paths of batch " .. i)
    assert.same(a[i].target:tolist(), b[i].target:tolist(), what .. ": targets of batch " .. i)
    assert.truthy(same_tensor(a[i].input, b[i].input), what .. ": inputs of batch " .. i .. " differ")
  end
end

describe("data.transforms", function()
  it("presets compose as the study's pipelines", function()
    local names = function(t)
      local o = {}
      for _, s in ipairs(t.specs) do o[#o + 1] = s.kind end
      return table.concat(o, ",")
    end
    assert.equal(names(data.transforms.preset("default", "train")), "RandomResizedCrop,RandomHorizontalFlip,Normalize")
    assert.equal(names(data.transforms.preset("default", "test")), "Resize,CenterCrop,Normalize")
    assert.equal(names(data.transforms.preset("aggressive", "train")),
      "RandomResizedCrop,RandomHorizontalFlip,RandomPerspective,RandomRotation,Normalize")
    local p = data.transforms.preset("aggressive", "train").specs
    assert.near(p[3].distortion, 0.25, 0)
    assert.near(p[3].p, 0.5, 0)
    assert.same(p[4].degrees, {-10, 10})
  end)
  it("name the nearest transform or option on a typo", function()
    assert.error_matches(function() data.transforms.compose({{"Resise", 256}}) end, "did you mean 'Resize'")
    assert.error_matches(function() data.transforms.compose({{"RandomResizedCrop", 224, scales = {0.5, 1}}}) end,
      "did you mean 'scale'")
    assert.error_matches(function() data.transforms.preset("agressive", "train") end, "did you mean 'aggressive'")
  end)
  it("reject a bad order and bad parameters", function()
    assert.error_matches(function() data.transforms.compose({{"Normalize"}, {"CenterCrop", 10}}) end,
      "must come before Normalize")
    assert.error_matches(function() data.transforms.compose({{"RandomErasing"}, {"Normalize"}}) end,
      "after Normalize")
    assert.error_matches(function() data.transforms.compose({{"CenterCrop", 0}}) end, "positive")
    assert.error_matches(function() data.transforms.compose({{"RandomHorizontalFlip", 2}}) end, "p must be in")
  end)
end)

describe("data.DataLoader", function()
  local aug = {{"RandomResizedCrop", 64}, {"RandomHorizontalFlip"}, {"RandomPerspective", 0.25, p = 0.5},
               {"RandomRotation", 10}, {"ColorJitter", 0.4, 0.4, 0.4, 0.1}, {"Normalize"}, {"RandomErasing"}}

  it("gives identical batches for num_workers 0, 1, 2 and 3", function()
    local ds = data.ImageFolder(tree(), {transform = aug})
    local ref
    for nw = 0, 3 do
      local l = data.DataLoader(ds, {batch_size = 3, shuffle = true, num_workers = nw, seed = 7, prefetch = 2})
      local e1, e2 = batches(l), batches(l)
      if not ref then ref = {e1, e2} else
        same_batches(e1, ref[1], "epoch 1, num_workers " .. nw)
        same_batches(e2, ref[2], "epoch 2, num_workers " .. nw)
      end
      l:close()
    end
    assert.equal(#ref[1], 4)
    assert.same(ref[1][1].input:size(), {3, 3, 64, 64})
    assert.equal(ref[1][1].target:dtype(), "int64")
  end)

  it("reshuffles every epoch and reproduces an epoch from the seed", function()
    local ds = data.ImageFolder(tree(), {transform = {{"Resize", {8, 8}}, {"ToTensor"}}})
    local function order(l)
      local o = {}
      for b in l:iter() do for _, i in ipairs(b.index) do o[#o + 1] = i end end
      return table.concat(o, " ")
    end
    local l1 = data.DataLoader(ds, {batch_size = 4, shuffle = true, seed = 3, num_workers = 2})
    local a, b = order(l1), order(l1)
    assert.truthy(a ~= b, "epochs 1 and 2 have the same order " .. a)
    local l2 = data.DataLoader(ds, {batch_size = 4, shuffle = true, seed = 3})
    assert.equal(order(l2), a)
    assert.equal(order(l2), b)
    local l3 = data.DataLoader(ds, {batch_size = 4, shuffle = true, seed = 4})
    assert.truthy(order(l3) ~= a)
    local l4 = data.DataLoader(ds, {batch_size = 4})
    assert.equal(order(l4), "1 2 3 4 5 6 7 8 9 10 11")
    -- a shuffled epoch is a permutation
    local seen = {}
    for i in a:gmatch("%d+") do seen[#seen + 1] = tonumber(i) end
    table.sort(seen)
    assert.equal(table.concat(seen, " "), "1 2 3 4 5 6 7 8 9 10 11")
  end)

  it("drop_last drops the short last batch", function()
    local ds = data.ImageFolder(tree(), {transform = {{"Resize", {8, 8}}, {"ToTensor"}}})
    local l = data.DataLoader(ds, {batch_size = 4, num_workers = 1})
    assert.equal(l:size(), 3)
    local bs = batches(l)
    assert.equal(#bs, 3)
    assert.equal(bs[3].input:size(1), 3)
    local ld = data.DataLoader(ds, {batch_size = 4, drop_last = true, num_workers = 2, shuffle = true})
    assert.equal(ld:size(), 2)
    assert.equal(ld:num_samples(), 8)
    bs = batches(ld)
    assert.equal(#bs, 2)
    assert.equal(bs[2].input:size(1), 4)
    assert.equal(ld.stats.samples, 8)
    -- with a progress bar (quietly: not a terminal here, one line per 10% on stderr)
    local n = 0
    for b in ld:iter({progress = "test"}) do n = n + b.n end
    assert.equal(n, 8)
    assert.error_matches(function() ld:iter({progres = true}) end, "did you mean 'progress'")
  end)

  it("skips a truncated file and records it", function()
    local ds = data.ImageFolder(tree(true), {transform = {{"Resize", {16, 16}}, {"ToTensor"}}})
    assert.equal(ds:size(), 12)
    for _, nw in ipairs({0, 2}) do
      local logged = {}
      local l = data.DataLoader(ds, {batch_size = 5, num_workers = nw, on_error = "skip",
                                     log = function(msg) logged[#logged + 1] = msg end})
      local n = 0
      for b in l:iter() do
        n = n + b.input:size(1)
        for _, p in ipairs(b.path) do assert.falsy(p:find("dog_truncated", 1, true)) end
      end
      assert.equal(n, 11)
      assert.equal(1, #logged)
      assert.truthy(logged[1]:find("skipped '.*dog_truncated.jpg'"), logged[1])
      assert.equal(l.stats.skipped, 1)
      assert.truthy(l.stats.skipped_paths[1]:find("dog_truncated.jpg", 1, true))
      l:close()
    end
  end)

  it("raises on the batch holding a truncated file under on_error = 'error'", function()
    local ds = data.ImageFolder(tree(true), {transform = {{"Resize", {16, 16}}, {"ToTensor"}}})
    for _, nw in ipairs({0, 3}) do
      local l = data.DataLoader(ds, {batch_size = 3, num_workers = nw, on_error = "error"})
      assert.error_matches(function() for _ in l:iter() do end end, "dog_truncated.jpg")
      -- the loader is still usable: the next epoch starts cleanly
      local it = l:iter()
      assert.truthy(it())
      l:close()
    end
  end)

  it("names a missing file", function()
    local ds = data.ImageFolder(tree(), {transform = {{"Resize", {16, 16}}, {"ToTensor"}}})
    ds.samples[2] = {path = tree() .. "/a/no_such_image.jpg", target = 1}
    local l = data.DataLoader(ds, {batch_size = 4, on_error = "error", num_workers = 2})
    assert.error_matches(function() for _ in l:iter() do end end, "no_such_image.jpg")
    local ls = data.DataLoader(ds, {batch_size = 4, on_error = "skip", log = false})
    batches(ls)
    assert.equal(ls.stats.skipped, 1)
    assert.truthy(ls.stats.skipped_paths[1]:find("no_such_image.jpg", 1, true))
  end)

  it("passes max_pixels to the decoder", function()
    local ds = data.ImageFolder(tree(), {transform = {{"Resize", {16, 16}}, {"ToTensor"}}})
    local l = data.DataLoader(ds, {batch_size = 4, max_pixels = 1000, on_error = "error"})
    assert.has_error(function() for _ in l:iter() do end end)
    local ls = data.DataLoader(ds, {batch_size = 4, max_pixels = 1000, log = false})
    assert.equal(#batches(ls), 0)
    assert.equal(ls.stats.skipped, 11)
  end)

  it("shuts down cleanly mid-epoch and after an error in the loop body", function()
    local ds = data.ImageFolder(tree(), {transform = {{"RandomResizedCrop", 32}, {"Normalize"}}})
    for _ = 1, 3 do
      local l = data.DataLoader(ds, {batch_size = 2, num_workers = 3, prefetch = 1, shuffle = true})
      for _ in l:iter() do break end
      local ok = pcall(function() for _ in l:iter() do error("boom") end end)
      assert.falsy(ok)
      local n = 0
      for _ in l:iter() do n = n + 1 end
      assert.equal(n, 6)
      l:close()
      l:close()
    end
    -- left to the garbage collector while its workers are busy
    local l = data.DataLoader(ds, {batch_size = 2, num_workers = 2})
    l:iter()()
    l = nil
    collectgarbage()
    collectgarbage()
  end)

  it("matches ds:get for the same sample and epoch", function()
    local ds = data.ImageFolder(tree(), {transform = aug, seed = 11})
    local l = data.DataLoader(ds, {batch_size = 4, shuffle = true, seed = 11, num_workers = 2})
    local b = l:iter()()
    for k, i in ipairs(b.index) do
      local s = ds:get(i, {epoch = 0})
      assert.truthy(same_tensor(s.input, b.input[k]), "sample " .. i)
      assert.equal(s.target, b.target[k])
    end
  end)

  it("rejects unknown options with the nearest name and bad values", function()
    local ds = data.ImageFolder(tree(), {transform = {{"Resize", {8, 8}}, {"ToTensor"}}})
    assert.error_matches(function() data.DataLoader(ds, {batchsize = 4}) end, "did you mean 'batch_size'")
    assert.error_matches(function() data.DataLoader(ds, {num_worker = 4}) end, "did you mean 'num_workers'")
    assert.error_matches(function() data.DataLoader(ds, {on_error = "ignore"}) end, "on_error")
    assert.error_matches(function() data.DataLoader(ds, {batch_size = 0}) end, "batch_size")
    assert.error_matches(function() data.ImageFolder(tree(), {extension = {"jpg"}}) end, "did you mean 'extensions'")
    local dv = data.ImageFolder(tree(), {transform = {{"Resize", 8}, {"ToTensor"}}})
    assert.error_matches(function() data.DataLoader(dv, {batch_size = 2}) end, "varying size")
  end)

  it("batches a TensorDataset", function()
    local x, y = av.arange(0, 10):view(10, 1):float(), av.arange(1, 11):long()
    local ds = data.TensorDataset(x, y)
    assert.equal(ds:size(), 10)
    assert.equal(ds:get(3).target, 3)
    local l = data.DataLoader(ds, {batch_size = 4, shuffle = true, seed = 1})
    local seen, n = {}, 0
    for b in l:iter() do
      n = n + 1
      for k = 1, b.input:size(1) do
        assert.equal(math.tointeger(b.input[k][1] + 1), b.target[k])
        seen[#seen + 1] = b.target[k]
      end
    end
    assert.equal(n, 3)
    table.sort(seen)
    assert.equal(table.concat(seen, ","), "1,2,3,4,5,6,7,8,9,10")
  end)
end)

describe("data.ImageFolder", function()
  it("lists sorted classes with 1-based targets", function()
    local ds = data.ImageFolder(tree(), {transform = {{"Resize", {20, 30}}, {"ToTensor"}}})
    assert.same(ds.classes, {"a", "b", "c"})
    assert.equal(ds:size(), 11) -- notes.txt is not an image
    assert.same(ds:class_counts(), {3, 4, 4})
    local s = ds:get(1)
    assert.same(s.input:size(), {3, 20, 30})
    assert.equal(s.target, 1)
    assert.truthy(s.path:find("/a/chicken.jpg", 1, true))
    assert.equal(ds:get(11).target, 3)
    -- no .png files anywhere: every class folder is empty for that extension
    assert.error_matches(function() data.ImageFolder(tree(), {extensions = {"png"}}) end, "has no images")
  end)
  it("names an empty class folder and a missing root", function()
    need_photos()
    local root = av_test.tmpname("_empty")
    sh("mkdir -p " .. q(root .. "/birds") .. " " .. q(root .. "/cats"))
    sh(("cp %s %s"):format(q(PHOTOS .. "/eagle.jpg"), q(root .. "/birds/")))
    assert.error_matches(function() data.ImageFolder(root) end, root .. "/cats")
    assert.error_matches(function() data.ImageFolder(root .. "/nope") end, "no folder")
    sh("rm -rf " .. q(root))
  end)
end)

describe("data.CUB", function()
  it("reads a small tree in the CUB-200-2011 layout", function()
    need_photos()
    if not pcall(require, "aviary.data.cub") then skip("aviary.data.cub is not there yet") end
    local root = av_test.tmpname("_cub")
    local classes = {"001.Albatross", "002.Eagle"}
    local imgs = {{"001.Albatross/a1.jpg", 1, 1, "chicken"}, {"001.Albatross/a2.jpg", 1, 0, "dog"},
                  {"002.Eagle/e1.jpg", 2, 1, "eagle"}, {"002.Eagle/e2.jpg", 2, 1, "horses"},
                  {"002.Eagle/e3.jpg", 2, 0, "person"}}
    for _, c in ipairs(classes) do sh("mkdir -p " .. q(root .. "/images/" .. c)) end
    local files = {images = {}, classes = {}, labels = {}, split = {}, boxes = {}}
    for i, c in ipairs(classes) do files.classes[#files.classes + 1] = i .. " " .. c end
    for i, im in ipairs(imgs) do
      sh(("cp %s %s"):format(q(PHOTOS .. "/" .. im[4] .. ".jpg"), q(root .. "/images/" .. im[1])))
      files.images[#files.images + 1] = i .. " " .. im[1]
      files.labels[#files.labels + 1] = i .. " " .. im[2]
      files.split[#files.split + 1] = i .. " " .. im[3]
      files.boxes[#files.boxes + 1] = ("%d %d.0 %d.0 100.0 80.0"):format(i, 10 * i, 5 * i)
    end
    for name, key in pairs({["images.txt"] = "images", ["classes.txt"] = "classes",
                            ["image_class_labels.txt"] = "labels", ["train_test_split.txt"] = "split",
                            ["bounding_boxes.txt"] = "boxes"}) do
      local f = io.open(root .. "/" .. name, "w")
      f:write(table.concat(files[key], "\n"), "\n")
      f:close()
    end
    local tr = data.CUB(root, {split = "train", transform = {{"Resize", {32, 32}}, {"Normalize"}}})
    local te = data.CUB(root, {split = "test", transform = data.transforms.preset("default", "test")})
    assert.equal(tr:size(), 3)
    assert.equal(te:size(), 2)
    assert.equal(#tr.classes, 2)
    local s = tr:get(1)
    assert.same(s.input:size(), {3, 32, 32})
    assert.equal(s.target, 1)
    assert.truthy(s.bbox)
    local l = data.DataLoader(tr, {batch_size = 2, num_workers = 2})
    local b = l:iter()()
    assert.same(b.target:tolist(), {1, 2})
    assert.truthy(b.bbox and b.bbox[1])
    assert.error_matches(function() data.CUB(root, {split = "val"}) end, "split")
    sh("rm -rf " .. q(root))
  end)
end)

-- torchvision comparisons: one Python process computes every reference
local PY = [==[
import sys, os
sys.path.insert(0, sys.argv[3])
import st, torch
from PIL import Image
import torchvision.transforms as T
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode as IM
out, photos = sys.argv[1], sys.argv[2]
res = {}
det = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
for n in ["chicken", "dog", "eagle", "giraffe", "horses", "person"]:
    res["det_" + n] = det(Image.open(os.path.join(photos, n + ".jpg")).convert("RGB")).contiguous()
tt = T.ToTensor()
dog = Image.open(os.path.join(photos, "dog.jpg")).convert("RGB")
res["bicubic"] = T.Compose([T.Resize(256, interpolation=IM.BICUBIC), T.CenterCrop(224), tt])(dog)
res["resize_hw"] = T.Compose([T.Resize((300, 200)), tt])(dog)
res["center_pad"] = T.Compose([T.Resize((100, 150)), T.CenterCrop((121, 163)), tt])(dog)
img = Image.open(os.path.join(photos, "eagle.jpg")).convert("RGB")
res["hflip"] = tt(F.hflip(img))
res["rotate"] = tt(F.rotate(img, 17.5, interpolation=IM.BILINEAR, fill=[10, 20, 30]))
W, H = img.size
start = [[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]]
end = [[40, 25], [W - 60, 10], [W - 20, H - 50], [30, H - 5]]
res["perspective"] = tt(F.perspective(img, start, end, interpolation=IM.BILINEAR, fill=[10, 20, 30]))
res["brightness"] = tt(F.adjust_brightness(img, 1.3))
res["contrast"] = tt(F.adjust_contrast(img, 0.6))
res["saturation"] = tt(F.adjust_saturation(img, 1.7))
res["hue"] = tt(F.adjust_hue(img, 0.2))
res["hue_neg"] = tt(F.adjust_hue(img, -0.35))
torch.manual_seed(0)
p = [T.RandomResizedCrop.get_params(torch.empty(375, 500), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(20000)]
res["rrc"] = torch.tensor(p, dtype=torch.int64)
st.save(out, {k: v.contiguous() for k, v in res.items()})
]==]

local ref_cache
local function refs()
  need_photos()
  if not av_test.have_torch() then skip(av_test.python_bin .. " cannot import torch") end
  if ref_cache then return ref_cache end
  local script, out = av_test.tmpname("_data_ref.py"), av_test.tmpname("_data_ref.safetensors")
  local f = io.open(script, "w")
  f:write(PY)
  f:close()
  local ok, msg = av_test.python(script, out, PHOTOS, ST_DIR)
  os.remove(script)
  if not ok and msg:find("No module named 'torchvision'", 1, true) then skip("python3-torchvision not installed") end
  assert.truthy(ok, "reference script failed: " .. tostring(msg))
  ref_cache = av.load(out)
  os.remove(out)
  return ref_cache
end

describe("data vs torchvision", function()
  local det = {{kind = "Resize", size = 256}, {kind = "CenterCrop", h = 224, w = 224}, {kind = "Normalize"}}
  local level = 1 / 255 / 0.224 + 1e-6

  it("Resize(256) + CenterCrop(224) + Normalize matches on the photos", function()
    need_photos()
    local r = refs()
    local worst = 0
    for _, n in ipairs(GOOD) do
      local x = av._data.run_file(PHOTOS .. "/" .. n .. ".jpg", det, {dct_scaling = false})
      local mx, mean = diff(x, r["det_" .. n])
      worst = math.max(worst, mx)
      assert.truthy(mx <= level and mean <= 1e-4, ("%s: max %g, mean %g"):format(n, mx, mean))
      -- the preset through a dataset gives the same tensor
    end
    local t = data.transforms.preset("default", "test")
    local xd = av._data.run_file(PHOTOS .. "/dog.jpg", t.specs, {dct_scaling = false})
    assert.truthy(same_tensor(xd, av._data.run_file(PHOTOS .. "/dog.jpg", det, {dct_scaling = false})))
  end)

  it("bicubic Resize, exact-size Resize and a padding CenterCrop match", function()
    need_photos()
    local r = refs()
    local raw = {kind = "Normalize", mean = {0, 0, 0}, std = {1, 1, 1}}
    local dog = PHOTOS .. "/dog.jpg"
    local cases = {
      {"bicubic", {{kind = "Resize", size = 256, interp = "bicubic"}, {kind = "CenterCrop", h = 224, w = 224}, raw}},
      {"resize_hw", {{kind = "Resize", h = 300, w = 200}, raw}},
      {"center_pad", {{kind = "Resize", h = 100, w = 150}, {kind = "CenterCrop", h = 121, w = 163}, raw}},
    }
    for _, c in ipairs(cases) do
      local mx, mean = diff(av._data.run_file(dog, c[2], {dct_scaling = false}), r[c[1]])
      assert.truthy(mx <= 1 / 255 + 1e-6 and mean <= 1e-4, ("%s: max %g, mean %g"):format(c[1], mx, mean))
    end
  end)

  it("stays close with DCT-domain scaling", function()
    need_photos()
    local r = refs()
    for _, n in ipairs(GOOD) do
      local x = av._data.run_file(PHOTOS .. "/" .. n .. ".jpg", det, {dct_scaling = true})
      local mx, mean = diff(x, r["det_" .. n])
      assert.truthy(mx <= 2.0 and mean <= 0.15, ("%s: max %g, mean %g"):format(n, mx, mean))
    end
  end)

  it("fixed-parameter ops match torchvision's PIL path", function()
    need_photos()
    local r = refs()
    local e, W, H = PHOTOS .. "/eagle.jpg", 773, 512
    local F = av._data.functional
    local cases = {
      {"hflip", F(e, "hflip"), 0, 0},
      {"rotate", F(e, "rotate", {angle = 17.5, fill = {10, 20, 30}}), 1 / 255 + 1e-6, 1e-4},
      {"perspective", F(e, "perspective", {start = {0, 0, W - 1, 0, W - 1, H - 1, 0, H - 1},
        ["end"] = {40, 25, W - 60, 10, W - 20, H - 50, 30, H - 5}, fill = {10, 20, 30}}), 0.35, 1e-4},
      {"brightness", F(e, "brightness", {factor = 1.3}), 1 / 255 + 1e-6, 1e-4},
      {"contrast", F(e, "contrast", {factor = 0.6}), 1 / 255 + 1e-6, 1e-4},
      {"saturation", F(e, "saturation", {factor = 1.7}), 1 / 255 + 1e-6, 1e-4},
      {"hue", F(e, "hue", {factor = 0.2}), 1 / 255 + 1e-6, 1e-4},
      {"hue_neg", F(e, "hue", {factor = -0.35}), 1 / 255 + 1e-6, 1e-4},
    }
    for _, c in ipairs(cases) do
      local mx, mean = diff(c[2], r[c[1]])
      assert.truthy(mx <= c[3] and mean <= c[4], ("%s: max %g, mean %g"):format(c[1], mx, mean))
    end
  end)

  it("RandomResizedCrop parameters follow torchvision's distribution", function()
    local r = refs()
    local W, H, N = 500, 375, 20000
    local function stats(p)
      p = p:double()
      local top, left, h, w = p:select(2, 1), p:select(2, 2), p:select(2, 3), p:select(2, 4)
      local area = h * w / (W * H)
      local lr = (w / h):log()
      local full = ((h:eq(H)):long() * (w:eq(W)):long()):sum():item() / N
      return {area = area:mean():item(), area_sd = area:std():item(), lr = lr:mean():item(),
              lr_sd = lr:std():item(), cy = ((top + h / 2) / H):mean():item(),
              cx = ((left + w / 2) / W):mean():item(), full = full,
              inside = (top:ge(0):long() * (top + h):le(H):long() * left:ge(0):long() * (left + w):le(W):long()):sum():item()}
    end
    local a, t = stats(av._data.rrc_params(W, H, N, 1)), stats(r.rrc)
    -- standard errors: area sd ~0.27 / sqrt(N) = 0.002, log-ratio sd ~0.17 / sqrt(N) = 0.0012
    assert.near(a.area, t.area, 0.01, "mean area fraction")
    assert.near(a.area_sd, t.area_sd, 0.01, "sd of the area fraction")
    assert.near(a.lr, t.lr, 0.008, "mean log aspect ratio")
    assert.near(a.lr_sd, t.lr_sd, 0.008, "sd of the log aspect ratio")
    assert.near(a.cy, 0.5, 0.01)
    assert.near(a.cx, 0.5, 0.01)
    assert.near(a.full, t.full, 0.01, "share of whole-image crops")
    assert.equal(a.inside, N)
  end)
end)

for _, root in pairs(trees) do os.execute("rm -rf " .. q(root)) end
