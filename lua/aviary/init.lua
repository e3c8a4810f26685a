--- aviary: tensors and CNNs for Lua 5.4.
-- `local av = require "aviary"` gives the tensor API; submodules
-- (aviary.nn, aviary.data, ...) are loaded on demand as av.nn, av.data, ...
local core = require "aviary.core"

local av = {}
for k, v in pairs(core) do av[k] = v end
av._VERSION = "0.1.0"
av.Tensor = core.Tensor

-- submodules load lazily so `require "aviary"` stays fast
setmetatable(av, {
  __index = function(t, k)
    local ok, mod = pcall(require, "aviary." .. k)
    if ok then rawset(t, k, mod); return mod end
    if type(mod) == "string" and not mod:find("module 'aviary." .. k .. "' not found", 1, true) then
      error(mod, 2)
    end
    return nil
  end,
})

-- Torch7-style aliases and conveniences written over the core
function av.Tensor.isTensor(x) return av.is_tensor(x) end
function av.Tensor.nDimension(x) return x:dim() end
av.typename = function(x)
  if av.is_tensor(x) then return x:type() end
  return type(x)
end

-- grad mode: av.no_grad(fn, ...) runs fn without recording the graph and
-- returns its results; av.no_grad() with no function switches recording off
-- and returns a guard for `local _ <close> = av.no_grad()`, which restores the
-- previous mode at the end of the block. av.enable_grad is the converse.
local function grad_mode(on)
  return function(fn, ...)
    local prev = core.is_grad_enabled()
    core.set_grad_enabled(on)
    if fn == nil then
      return setmetatable({}, {__close = function() core.set_grad_enabled(prev) end,
                               __name = on and "aviary.enable_grad" or "aviary.no_grad"})
    end
    if type(fn) ~= "function" then
      core.set_grad_enabled(prev)
      error(("aviary.%s: expected a function or nothing, got %s"):format(on and "enable_grad" or "no_grad", type(fn)), 2)
    end
    local res = table.pack(pcall(fn, ...))
    core.set_grad_enabled(prev)
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end
end
av.no_grad = grad_mode(false)
av.enable_grad = grad_mode(true)

-- devices: the CUDA backend reports what the build and the machine have.
-- Device indices are 0-based, as in the names 'cuda:0', 'cuda:1'.
av.cuda = {
  is_available = core._cuda_is_available,
  device_count = core._cuda_device_count,
  compiled = core._cuda_compiled,
  -- waits for every queued GPU operation (a no-op without a GPU)
  synchronize = core._cuda_synchronize,
  -- {allocated, reserved, peak_allocated, free, total} in bytes; an error without a GPU
  memory_stats = core._cuda_memory_stats,
  -- returns the caching allocator's free blocks to the driver
  empty_cache = core._cuda_empty_cache,
  reset_peak_memory_stats = core._cuda_reset_peak_memory_stats,
  -- an index (0 for 'cuda:0') or a name
  set_device = core._cuda_set_device,
  current_device = core._cuda_current_device,
}
-- av.cuda.benchmark: cuDNN's benchmark mode (time every algorithm on a shape's first call),
-- read and assigned like torch.backends.cudnn.benchmark
setmetatable(av.cuda, {
  __index = function(_, k) if k == "benchmark" then return core._cudnn_benchmark() end end,
  __newindex = function(t, k, v)
    if k ~= "benchmark" then rawset(t, k, v); return end
    if type(v) ~= "boolean" then error("aviary.cuda.benchmark: expected a boolean, got " .. type(v), 2) end
    core._cudnn_benchmark(v)
  end,
})
for _, k in ipairs{"_cuda_device_count", "_cuda_compiled", "_cuda_is_available", "_cuda_synchronize",
                   "_cuda_memory_stats", "_cuda_empty_cache", "_cuda_reset_peak_memory_stats",
                   "_cuda_set_device", "_cuda_current_device", "_cudnn_benchmark"} do
  av[k] = nil
end

return av
