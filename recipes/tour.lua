-- A short tour of aviary's tensors: bin/aviary recipes/tour.lua
-- (`make demo` runs the bird-classification workflow: recipes/demo.lua.)
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

-- autograd: a linear classifier on three Gaussian clouds, trained with SGD
local F = require "aviary.nn.functional"
local n, classes = 300, 3
local centers = av.tensor({{2, 0}, {-1, 1.7}, {-1, -1.7}})
local labels = av.randint(1, classes + 1, {n})
local points = centers:index_select(1, labels) + av.randn(n, 2) * 1.0
local w = av.zeros(classes, 2, {requires_grad = true})
local b = av.zeros(classes, {requires_grad = true})
print("\ntraining a linear classifier with autograd:")
for step = 1, 60 do
  local logits = F.linear(points, w, b)
  local loss = F.cross_entropy(logits, labels)
  w.grad, b.grad = nil, nil
  loss:backward()
  av.no_grad(function()
    w:sub_(w.grad * 0.5)
    b:sub_(b.grad * 0.5)
  end)
  if step % 20 == 0 or step == 1 then
    local acc = av.no_grad(function() return logits:argmax(2):eq(labels):float():mean():item() end)
    print(("  step %2d  loss %.4f  accuracy %.1f%%"):format(step, loss:item(), acc * 100))
  end
end
