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

-- devices: the CUDA backend reports what the build and the machine have
av.cuda = {
  is_available = function() return core._cuda_device_count() > 0 end,
  device_count = function() return core._cuda_device_count() end,
  compiled = function() return core._cuda_compiled() end,
}
av._cuda_device_count, av._cuda_compiled = nil, nil

return av
