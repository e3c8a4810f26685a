-- The demo: a short tour of aviary's tensors. (Later steps turn `make demo`
-- into the whole bird-classification workflow on a generated dataset.)
local av = require "aviary"

av.manual_seed(0)
print("aviary " .. av._VERSION .. " — tensors on " .. av.get_num_threads() .. " threads\n")

local x = av.randn(2, 3)
print("x = av.randn(2, 3)"); print(x)
print("\nx:sum(2) -- dims are 1-based"); print(x:sum(2))
print("\nbroadcasting: x + av.arange(3)"); print(x + av.arange(3))
print("\nmatmul: x @ x:t()"); print(av.matmul(x, x:t()))

local path = os.tmpname() .. ".safetensors"
av.save(path, {x = x}, {note = "demo"})
local back, meta = av.load(path)
os.remove(path)
print(("\nsaved and loaded %s: max difference %g, metadata note=%q"):format(
  path, (back.x - x):abs():max():item(), meta.note))

local a, b = av.randn(1024, 1024), av.randn(1024, 1024)
local t0 = av.clock()
av.matmul(a, b)
local dt = av.clock() - t0
print(("\n1024x1024 matmul: %.1f ms (%.0f GFLOP/s)"):format(dt * 1e3, 2 * 1024 ^ 3 / dt / 1e9))
