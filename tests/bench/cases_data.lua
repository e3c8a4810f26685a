-- The data pipeline on synthetic CUB-format JPEGs (recipes/make_synthetic_cub.lua: 16 species
-- x 20 images of about 500x375, quality 90, generated once into $TMPDIR/aviary_bench_cub):
--  * one epoch of decode + RandomResizedCrop(224) + horizontal flip + normalise into batches
--    of 32 with 2 workers: aviary's C loader against torchvision's ImageFolder +
--    DataLoader(num_workers=2, persistent workers) with PIL, over the same files;
--  * single-thread decode of every file to RGB, full size and with DCT-domain scaling to at
--    least 160 on the short side (a half-size decode) (PIL: Image.draft, the same libjpeg feature).
-- images/s = 320 / the time shown; megapixels/s from the files' total pixel count.
local ROOT = (os.getenv("TMPDIR") or "/tmp") .. "/aviary_bench_cub"
local N = 320

local function ensure_dataset(av)
  local images = ROOT .. "/CUB_200_2011/images"
  local f = io.open(ROOT .. "/CUB_200_2011/images.txt")
  if f then f:close(); return images end
  require("aviary.data.synthetic").generate({out = ROOT, classes = 16, per_class = 20, seed = 1, progress = false})
  return images
end

local function list_files(images)
  local out = {}
  local p = io.popen("find '" .. images .. "' -name '*.jpg' | sort")
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local TORCH_LOADER = [==[
import torchvision, torch.utils.data
import torchvision.transforms as T
ds = torchvision.datasets.ImageFolder(%q, T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]))
dl = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2, persistent_workers=True)
]==]

local TORCH_DECODE = [==[
import glob
from PIL import Image
files = sorted(glob.glob(%q + "/*/*.jpg"))
torch.set_num_threads(1)
def decode(draft):
    for f in files:
        im = Image.open(f)
        if draft:
            im.draft("RGB", (max(1, im.width * 160 // min(im.size)), max(1, im.height * 160 // min(im.size))))
        im.convert("RGB").load()
]==]

return function(case, av)
  local images = ensure_dataset(av)
  case(("data: decode+RandomResizedCrop(224)+flip+normalize, %d synthetic CUB JPEGs, batch 32, 2 workers"):format(N), function()
    local data = require "aviary.data"
    local ds = data.ImageFolder(images, {transform = {{"RandomResizedCrop", 224}, {"RandomHorizontalFlip"}, {"Normalize"}}})
    local loader = data.DataLoader(ds, {batch_size = 32, shuffle = true, num_workers = 2, seed = 1})
    return function()
      local n = 0
      for b in loader:iter() do n = n + b.n end
      assert(n == N, "the loader gave " .. n .. " images")
    end
  end, TORCH_LOADER:format(images), "for x, y in dl: pass", 5, 1, ("one epoch of %d images"):format(N))

  local files = list_files(images)
  local mp = 0
  for _, f in ipairs(files) do
    local w, h = av._image.probe(f)
    mp = mp + w * h / 1e6
  end
  for _, draft in ipairs({false, true}) do
    case(("data: single-thread JPEG decode%s, %d files (%.1f MP)"):format(draft and " with DCT scaling to >= 160" or "",
      #files, mp), function()
      return function()
        local threads = av.get_num_threads()
        av.set_num_threads(1)
        for _, f in ipairs(files) do
          if draft then
            local w, h = av._image.probe(f)
            local s = 160 / math.min(w, h)
            av._image.load(f, {min_size = {math.ceil(w * s), math.ceil(h * s)}})
          else
            av._image.load(f)
          end
        end
        av.set_num_threads(threads)
      end
    end, TORCH_DECODE:format(images), ("decode(%s)"):format(draft and "True" or "False"), 5, 1,
      ("megapixels/s = %.1f / time"):format(mp))
  end
end
