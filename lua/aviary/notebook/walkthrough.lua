--- aviary.notebook.walkthrough: where the study's walkthroughs (notebooks/000-006) find their data
-- and their model, decided in one place from one setting.
--   CUB = os.getenv("AVIARY_CUB")          -- the extracted CUB_200_2011 folder; nil: synthetic
--   W = require("aviary.notebook.walkthrough").setting(NB, CUB)
--   W.source    a folder in CUB's own format (the archive, or make demo's synthetic stand-in)
--   W.images    the study's train/ and test/ layout prepared from it by notebook 000
--   W.data_dir  what the notebooks use: W.images, or with --quick notebook 000's 10-species subset
--   W.run       where notebook 002 writes the trained model
--   W.need_data(), W.need_run()   stop with which notebook to run first
local W = {}

local function exists(p) return os.execute("test -e '" .. p:gsub("'", "'\\''") .. "'") == true end

local function count_lines(p)
  local f, n = io.open(p), 0
  if not f then return 0 end
  for _ in f:lines() do n = n + 1 end
  f:close()
  return n
end

function W.setting(NB, cub)
  if cub == nil and exists("data/CUB_200_2011/images.txt") then cub = "data/CUB_200_2011" end
  local s = {cub = cub, exists = exists, quick = NB.quick}
  if cub then
    cub = cub:gsub("/+$", "")
    if not exists(cub .. "/images.txt") then
      error(cub .. " is not an extracted CUB_200_2011 folder (no images.txt in it)", 2)
    end
    s.source, s.images = cub, "data/images"
  else
    -- make demo's set; data/synthetic_demo when data/synthetic holds another one (as recipes/demo.lua)
    local n = count_lines("data/synthetic/CUB_200_2011/classes.txt")
    s.source = (n == 0 or n == 20) and "data/synthetic/CUB_200_2011" or "data/synthetic_demo/CUB_200_2011"
    s.images = "data/demo_images"
  end
  s.data_dir = NB.quick and (s.images .. "_quick") or s.images
  s.run = NB.out .. "/runs/walkthrough" .. (NB.quick and "-quick" or "")
  local flag = NB.quick and " --quick" or ""
  function s.need_data()
    if not exists(s.data_dir .. "/train") or not exists(s.source .. "/images.txt") then
      error(("%s is not prepared: run notebooks/000_organise_data.lua%s first"):format(s.data_dir, flag), 0)
    end
  end
  function s.need_run()
    if not exists(s.run .. "/best.ckpt") then
      error(("no trained model in %s: run notebooks/002_train.lua%s first"):format(s.run, flag), 0)
    end
  end
  return s
end

return W
