-- Finite-difference gradient checks in float64, in the manner of torch/nn's
-- Jacobian tests: the analytic vector-Jacobian product from av.grad is
-- compared with central differences of <f(x), v> for a random v, element by
-- element of every input. The seed is part of every failure message.
local av = require "aviary"

local M = {}

local function dot(y, v) return (y * v):sum():item() end

-- fn(inputs...) -> tensor; inputs: list of float64 tensors (made to require grad)
-- opts: eps (1e-6), atol (1e-5), rtol (1e-3), seed
function M.check(fn, inputs, opts)
  opts = opts or {}
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  local seed = opts.seed or math.random(1, 1 << 30)
  av.manual_seed(seed)
  for _, x in ipairs(inputs) do
    assert(x:dtype() == "float64", "gradcheck inputs must be float64")
    x:requires_grad_(true)
  end
  local y = fn(table.unpack(inputs))
  local v = av.randn(y:size(), {dtype = "float64"})
  local grads = av.grad(y, inputs, {grad_outputs = v, allow_unused = true})
  for k, x in ipairs(inputs) do
    local g = grads[k]
    local flat = x:view(-1)
    local n = flat:numel()
    local ga = g and g:contiguous():view(-1) or nil
    for i = 1, n do
      local numeric = av.no_grad(function()
        local old = flat[i]
        flat[i] = old + eps
        local up = dot(fn(table.unpack(inputs)), v)
        flat[i] = old - eps
        local down = dot(fn(table.unpack(inputs)), v)
        flat[i] = old
        return (up - down) / (2 * eps)
      end)
      local analytic = ga and ga[i] or 0
      if not (math.abs(analytic - numeric) <= atol + rtol * math.abs(numeric)) then
        error(("gradient of input %d element %d: analytic %.10g, numeric %.10g (seed %d)")
          :format(k, i, analytic, numeric, seed), 2)
      end
    end
  end
  return true
end

-- a float64 tensor of the given size with values away from 0 (for log, div, ...)
function M.positive(...)
  return av.rand({...}, {dtype = "float64"}) + 0.5
end
function M.randn(...)
  return av.randn({...}, {dtype = "float64"})
end

return M
