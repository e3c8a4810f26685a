-- Organises CUB-200-2011 into the study's layout (see docs/data.md).
--   bin/aviary recipes/prepare_cub.lua --src=CUB_200_2011.tgz|data/CUB_200_2011 [--dst=data/images]
--     [--mode=link|copy|index] [--crop=bbox] [--format=cub|nabirds] [--no-check]
local cub = require "aviary.data.cub"

local usage = [[
usage: bin/aviary recipes/prepare_cub.lua --src=PATH [options]
  --src=PATH        CUB_200_2011.tgz, or the extracted CUB_200_2011 folder (NABirds' folder works too)
  --dst=data/images writes DST/{train,test}/<NNN.Class_Name>/*.jpg, DST/train.txt, DST/test.txt, DST/classes.json
  --mode=link       link (hard links, copies when on another filesystem) | copy | index (only the lists)
  --crop=bbox       write each image cropped to its bird's bounding box
  --format=cub      cub | nabirds (default: nabirds when hierarchy.txt is present)
  --no-check        do not check that every listed image file exists
  --quiet           no progress bar]]

local opts, src, dst = {}, nil, "data/images"
for _, a in ipairs(arg) do
  if a == "-h" or a == "--help" then print(usage) os.exit(0) end
  local k, v = a:match("^%-%-([%w_%-]+)=(.*)$")
  if not k then k = a:match("^%-%-([%w_%-]+)$") end
  if k == "src" then src = v
  elseif k == "dst" then dst = v
  elseif k == "mode" then opts.mode = v
  elseif k == "crop" then opts.crop = v
  elseif k == "format" then opts.format = v
  elseif k == "no-check" then opts.check_images = false
  elseif k == "quiet" then opts.progress = false
  else io.stderr:write("prepare_cub: unexpected argument '" .. a .. "'\n" .. usage .. "\n") os.exit(2) end
end
if not src then io.stderr:write("prepare_cub: --src is required\n" .. usage .. "\n") os.exit(2) end

local ok, res = pcall(cub.prepare, src, dst, opts)
if not ok then io.stderr:write("prepare_cub: " .. tostring(res) .. "\n") os.exit(1) end
print(("%s (%s, %d classes) -> %s, mode %s%s"):format(src, res.format, res.classes, res.dst, res.mode,
  opts.crop and ", cropped to the bounding boxes" or ""))
print(("train: %d images"):format(res.train))
print(("test:  %d images"):format(res.test))
