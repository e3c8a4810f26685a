-- Peak resident memory of one forward+backward of the golden network
-- (tests/lua/golden_net.lua) at batch 32, 64x64 inputs: prints
-- "<rss before MB> <peak MB>" read from /proc/self/status.
package.path = arg[0]:gsub("[^/]*$", "") .. "../lua/?.lua;" .. package.path
local av = require "aviary"
local F = require "aviary.nn.functional"
local net = require "golden_net"

local function status(key)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. key .. ":%s+(%d+)")
    if v then return tonumber(v) / 1024 end
  end
end

av.manual_seed(1)
local p, buf = net.init(200, 32)
for _, v in pairs(p) do v:requires_grad_(true) end
local x, target = av.randn(32, 3, 64, 64), av.randint(1, 201, {32})
collectgarbage()
local before = status("VmRSS")
local loss = F.cross_entropy(net.forward(p, buf, x), target)
loss:backward()
print(("%.1f %.1f"):format(before, status("VmHWM")))
