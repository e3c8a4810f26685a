-- Writes a synthetic dataset in CUB-200-2011's exact format (see docs/data.md).
--   bin/aviary recipes/make_synthetic_cub.lua [--classes=200] [--per_class=60] [--size=500x375]
--     [--quality=90] [--seed=1] [--out=data/synthetic] [--grayscale_fraction=0.01] [--tgz] [--jobs=N]
-- The drawing is in lua/aviary/data/synthetic.lua (parameters) and runtime/image/draw.c (pixels).
local synth = require "aviary.data.synthetic"

local usage = [[
usage: bin/aviary recipes/make_synthetic_cub.lua [options]
  --classes=200            number of species (1..999)
  --per_class=60           images per species
  --size=500x375           typical image size WxH (each image varies by +-15%, some portrait)
  --quality=90             JPEG quality
  --seed=1                 everything is determined by the seed
  --out=data/synthetic     writes OUT/CUB_200_2011/ (and OUT/CUB_200_2011.tgz with --tgz)
  --grayscale_fraction=0.01  share of grayscale images (the real set has a few)
  --tgz                    also write CUB_200_2011.tgz, as the real set is distributed
  --jobs=N                 worker processes (default: the number of cores, at most 8)
  --quiet                  no progress bar]]

local opts = {}
local numeric = {classes = true, per_class = true, quality = true, seed = true, grayscale_fraction = true, jobs = true}
for _, a in ipairs(arg) do
  if a == "-h" or a == "--help" then print(usage) os.exit(0) end
  local k, v = a:match("^%-%-([%w_]+)=(.*)$")
  if not k then k = a:match("^%-%-([%w_]+)$"); v = true end
  if not k then io.stderr:write("make_synthetic_cub: unexpected argument '" .. a .. "'\n" .. usage .. "\n") os.exit(2) end
  if k == "quiet" then opts.progress = false
  elseif numeric[k] then
    local n = tonumber(v)
    if not n then io.stderr:write(("make_synthetic_cub: --%s needs a number, got '%s'\n"):format(k, tostring(v))) os.exit(2) end
    opts[k] = math.tointeger(n) or n
  elseif k == "tgz" then opts.tgz = v == true or v == "1" or v == "true"
  elseif k == "size" or k == "out" then opts[k] = v
  else io.stderr:write("make_synthetic_cub: unknown option --" .. k .. "\n" .. usage .. "\n") os.exit(2) end
end

local ok, res = pcall(synth.generate, opts)
if not ok then io.stderr:write("make_synthetic_cub: " .. tostring(res) .. "\n") os.exit(1) end
print(("wrote %s: %d classes, %d images (%d train / %d test) in %.1f s (%.1f images/s)"):format(
  res.root, res.classes, res.images, res.train, res.test, res.seconds, res.images / math.max(res.seconds, 1e-9)))
if res.tgz then print("wrote " .. res.tgz) end
