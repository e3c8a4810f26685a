-- Resident memory of the data loader across epochs (it should stay flat: the
-- loader streams through a fixed ring of batch buffers). Prints
-- "<rss after epoch 1 MB> <rss after epoch N MB> <peak MB>" for N epochs of the
-- synthetic CUB set that cases_data.lua generates.
-- usage: aviary loader_mem.lua images_root epochs
local av = require "aviary"
local data = require "aviary.data"
local root, epochs = arg[1], tonumber(arg[2] or "5")

local function status(key)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. key .. ":%s+(%d+)")
    if v then return tonumber(v) / 1024 end
  end
end

local ds = data.ImageFolder(root, {transform = {{"RandomResizedCrop", 224}, {"RandomHorizontalFlip"}, {"Normalize"}}})
local loader = data.DataLoader(ds, {batch_size = 32, shuffle = true, num_workers = 2, seed = 1})
local first
for e = 1, epochs do
  for b in loader:iter() do local _ = b.input end
  collectgarbage()
  if e == 1 then first = status("VmRSS") end
end
print(("%.1f %.1f %.1f"):format(first, status("VmRSS"), status("VmHWM")))
