--- aviary.interpret: Captum's attribution methods (captum.attr) over aviary's autograd.
--
--   local interpret = require "aviary.interpret"
--   model:evaluate()
--   local ig = interpret.IntegratedGradients(model)
--   local attr, delta = ig:attribute(x, {target = 3, n_steps = 50, return_convergence_delta = true})
--   local cam = interpret.LayerGradCam(model, "layer4"):attribute(x, {target = 3})  -- N x 1 x h x w
--   local up = interpret.interpolate(cam, {224, 224}, "bilinear")
--
-- forward_func is an nn.Module (called as model(x)) or a Lua function(x) -> N x C scores; inputs are
-- N x C x H x W float tensors (any N); target is a 1-based class number, a list or 1-d integer tensor
-- of N of them, or nil for each example's predicted class. Every method runs in the model's current
-- mode, leaves .grad of parameters and inputs untouched (gradients come from av.grad) and returns
-- tensors detached from the graph. Semantics, option names and defaults are Captum's; unknown
-- options are errors that list the valid ones.
--
-- Gradient methods: Saliency, InputXGradient, IntegratedGradients, GuidedBackprop, Deconvolution,
-- GradientShap, NoiseTunnel (wraps any method). Layer methods (aviary/interpret/attr_layer.lua):
-- LayerGradCam, GuidedGradCam, LayerActivation, LayerIntegratedGradients, interpolate.
-- Perturbation methods (aviary/interpret/attr_perturb.lua): Occlusion, ShapleyValueSampling.
local av = require "aviary"
local C = require "aviary.interpret.attr_common"

local interpret = {}

-- a method class: interpret.Name(f, opts) -> object with :attribute(x, opts)
local class = C.class
interpret._class = class

------------------------------------------------------------------------------
-- Saliency, InputXGradient, GuidedBackprop, Deconvolution

local Saliency = class("Saliency")
Saliency.options = C.set({"target", "abs"})

--- interpret.Saliency(forward_func) -> object; :attribute(x, {target, abs = true}) -> d score / d x
-- (its absolute value unless abs = false), x's size
function interpret.Saliency(f)
  return setmetatable({forward = C.forward_fn("Saliency", f), raw = f}, Saliency)
end

function Saliency:attribute(x, opts)
  local who = "Saliency"
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  local targets = C.targets(who, opts.target, self.forward, x)
  local g = C.input_grad(who, self.forward, x, targets, 0, C.params(self.raw))
  if opts.abs == false then return g end
  return g:abs()
end

local InputXGradient = class("InputXGradient")
InputXGradient.options = C.set({"target"})

--- interpret.InputXGradient(forward_func) -> object; :attribute(x, {target}) -> x * d score / d x
function interpret.InputXGradient(f)
  return setmetatable({forward = C.forward_fn("InputXGradient", f), raw = f}, InputXGradient)
end

function InputXGradient:attribute(x, opts)
  local who = "InputXGradient"
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  local targets = C.targets(who, opts.target, self.forward, x)
  local g = C.input_grad(who, self.forward, x, targets, 0, C.params(self.raw))
  return x:detach() * g
end

local GuidedBackprop = class("GuidedBackprop")
GuidedBackprop.options = C.set({"target"})
GuidedBackprop.relu_mode = 1

--- interpret.GuidedBackprop(forward_func) -> object; :attribute(x, {target}) -> the gradient with every
-- ReLU's backward replaced by grad_out * (out > 0) * (grad_out > 0) (Springenberg et al.). aviary's models
-- call the functional av.relu, so this switches the C autograd's ReLU gradient mode for the attribution's
-- backward only (av._attr.set_relu_grad_mode), restored even on error. Captum overrides nn.ReLU modules;
-- for torchvision's models, whose ReLUs are all modules, the two agree.
function interpret.GuidedBackprop(f)
  return setmetatable({forward = C.forward_fn("GuidedBackprop", f), raw = f}, GuidedBackprop)
end

function GuidedBackprop:attribute(x, opts)
  local who = self.name
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  local targets = C.targets(who, opts.target, self.forward, x)
  return (C.input_grad(who, self.forward, x, targets, self.relu_mode, C.params(self.raw)))
end

local Deconvolution = class("Deconvolution")
Deconvolution.options = GuidedBackprop.options
Deconvolution.relu_mode = 2
Deconvolution.attribute = GuidedBackprop.attribute

--- interpret.Deconvolution(forward_func) -> object; :attribute(x, {target}) -> the gradient with every
-- ReLU's backward replaced by max(grad_out, 0), whatever the ReLU's input (Zeiler and Fergus)
function interpret.Deconvolution(f)
  return setmetatable({forward = C.forward_fn("Deconvolution", f), raw = f}, Deconvolution)
end

------------------------------------------------------------------------------
-- Integrated gradients

-- Gauss-Legendre nodes (ascending) and weights on [-1, 1], as numpy.polynomial.legendre.leggauss(n)
local function leggauss(n)
  local xs, ws = {}, {}
  for i = 1, n do
    local z = math.cos(math.pi * (i - 0.25) / (n + 0.5))
    local pp
    for _ = 1, 100 do
      local p1, p2 = 1.0, 0.0
      for j = 1, n do
        local p3 = p2
        p2 = p1
        p1 = ((2 * j - 1) * z * p2 - (j - 1) * p3) / j
      end
      pp = n * (z * p1 - p2) / (z * z - 1)
      local z1 = z
      z = z1 - p1 / pp
      if math.abs(z - z1) <= 1e-15 then break end
    end
    local p1, p2 = 1.0, 0.0
    for j = 1, n do
      local p3 = p2
      p2 = p1
      p1 = ((2 * j - 1) * z * p2 - (j - 1) * p3) / j
    end
    pp = n * (z * p1 - p2) / (z * z - 1)
    xs[n + 1 - i], ws[n + 1 - i] = z, 2 / ((1 - z * z) * pp * pp)
  end
  return xs, ws
end
interpret._leggauss = leggauss

local METHODS = {"gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"}

--- interpret.approximation(method, n) -> step sizes, alphas (Lua lists): captum.attr._utils.approximation_methods
function interpret.approximation(method, n)
  local steps, alphas = {}, {}
  local function linspace(a, b)
    for k = 1, n do alphas[k] = n == 1 and a or a + (b - a) * (k - 1) / (n - 1) end
  end
  if method == "gausslegendre" then
    local xs, ws = leggauss(n)
    for k = 1, n do alphas[k], steps[k] = 0.5 * (1 + xs[k]), 0.5 * ws[k] end
  elseif method == "riemann_trapezoid" then
    if n < 2 then error("riemann_trapezoid needs n_steps >= 2", 2) end
    for k = 1, n do steps[k] = (k == 1 or k == n) and 1 / (2 * (n - 1)) or 1 / (n - 1) end
    linspace(0, 1)
  else
    for k = 1, n do steps[k] = 1 / n end
    if method == "riemann_left" then linspace(0, 1 - 1 / n)
    elseif method == "riemann_right" then linspace(1 / n, 1)
    elseif method == "riemann_middle" then linspace(1 / (2 * n), 1 - 1 / (2 * n))
    else error(("unknown approximation method '%s' (valid: %s)"):format(tostring(method), table.concat(METHODS, ", ")), 2) end
  end
  return steps, alphas
end

--- interpret._integrate(who, start, finish, n_steps, method, chunk, grad_fn) -> sum_k step_k * grad(start +
-- alpha_k (finish - start)); grad_fn(batch, k) gets k stacked points (alpha-major, N rows each)
function interpret._integrate(who, start, finish, n_steps, method, chunk, grad_fn)
  local ok, steps, alphas = pcall(interpret.approximation, method, n_steps)
  if not ok then error(who .. ": method: " .. tostring(steps):gsub("^.-:%d+: ", ""), 0) end
  local diff = finish - start
  local total
  local k0 = 1
  while k0 <= n_steps do
    local k1 = math.min(n_steps, k0 + chunk - 1)
    local parts = {}
    for k = k0, k1 do parts[#parts + 1] = start + diff * alphas[k] end
    local batch = #parts == 1 and parts[1] or av.cat(parts, 1)
    parts = nil
    local g = grad_fn(batch, k1 - k0 + 1)
    local n = start:size(1)
    for k = k0, k1 do
      local gk = g:narrow(1, (k - k0) * n + 1, n) * steps[k]
      if total then total:add_(gk) else total = gk end
    end
    k0 = k1 + 1
  end
  return total
end

local function check_method(who, m)
  for _, v in ipairs(METHODS) do if v == m then return m end end
  error(("%s: method must be one of %s, got '%s'"):format(who, table.concat(METHODS, ", "), tostring(m)), 3)
end
interpret._check_method = check_method

local IntegratedGradients = class("IntegratedGradients")
IntegratedGradients.options = C.set({"baselines", "target", "n_steps", "method", "internal_batch_size",
                                     "return_convergence_delta"})

--- interpret.IntegratedGradients(forward_func, {multiply_by_inputs = true}) -> object;
-- :attribute(x, {baselines = nil (zeros) | number | tensor (x's size or 1 x C x H x W), target, n_steps = 50,
--   method = 'gausslegendre' | 'riemann_left' | 'riemann_right' | 'riemann_middle' | 'riemann_trapezoid',
--   internal_batch_size = nil, return_convergence_delta = false}) -> attributions [, delta]
-- attributions = (x - baseline) * sum_k step_k * grad(baseline + alpha_k (x - baseline)); internal_batch_size
-- bounds the rows of each forward (whole steps of N rows: max(1, internal_batch_size // N) steps);
-- delta (N, float64) = sum(attributions) - (f(x) - f(baseline)) per example.
function interpret.IntegratedGradients(f, opts)
  opts = C.check_opts("IntegratedGradients", opts, C.set({"multiply_by_inputs"}))
  return setmetatable({forward = C.forward_fn("IntegratedGradients", f), raw = f,
                       multiply_by_inputs = opts.multiply_by_inputs ~= false}, IntegratedGradients)
end

function IntegratedGradients:attribute(x, opts)
  local who = "IntegratedGradients"
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  local f = self.forward
  local n_steps = C.positive_int(who, "n_steps", opts.n_steps, 50)
  local method = check_method(who, opts.method or "gausslegendre")
  local base = C.baselines(who, opts.baselines, x)
  local targets = C.targets(who, opts.target, f, x)
  local n = x:size(1)
  local ibs = C.positive_int(who, "internal_batch_size", opts.internal_batch_size, nil)
  local chunk = ibs and math.max(1, ibs // n) or n_steps
  x = x:detach()
  local params = C.params(self.raw)
  local total = interpret._integrate(who, base, x, n_steps, method, chunk, function(batch, k)
    return (C.input_grad(who, f, batch, C.repeat_list(targets, k), 0, params))
  end)
  local attr = self.multiply_by_inputs and total * (x - base) or total
  if opts.return_convergence_delta then
    local delta = C.sum_rest(attr) - (C.scores(who, f, x, targets) - C.scores(who, f, base, targets))
    return attr, delta
  end
  return attr
end

------------------------------------------------------------------------------
-- NoiseTunnel

local NoiseTunnel = class("NoiseTunnel")
local NT_OPTIONS = {"nt_type", "nt_samples", "nt_samples_batch_size", "stdevs", "draw_baseline_from_distrib", "seed"}
local NT_TYPES = {smoothgrad = true, smoothgrad_sq = true, vargrad = true}

--- interpret.NoiseTunnel(method_object) -> object; :attribute(x, {nt_type = 'smoothgrad' | 'smoothgrad_sq' |
-- 'vargrad', nt_samples = 5, nt_samples_batch_size = nil (all in one call), stdevs = 1.0,
-- draw_baseline_from_distrib = false, seed = nil, ...the wrapped method's options}) -> attributions.
-- Runs the wrapped method on nt_samples noisy copies x + N(0, stdevs^2) and returns the mean (smoothgrad),
-- the mean of squares (smoothgrad_sq) or the variance E[a^2] - E[a]^2 (vargrad). A nil target is each
-- example's predicted class on the clean x. With draw_baseline_from_distrib, each noisy row gets a baseline
-- row drawn at random from the baselines tensor. A seed makes the draws repeat (the generator's state is
-- restored afterwards).
function interpret.NoiseTunnel(m)
  if type(m) ~= "table" or type(m.attribute) ~= "function" or not m.options then
    error("NoiseTunnel: expected an attribution method object (e.g. interpret.Saliency(model)), got " .. type(m), 2)
  end
  if getmetatable(m) == NoiseTunnel then error("NoiseTunnel: cannot wrap another NoiseTunnel", 2) end
  local options = C.set(NT_OPTIONS)
  for k in pairs(m.options) do options[k] = true end
  return setmetatable({method = m, forward = m.forward, options = options}, NoiseTunnel)
end

function NoiseTunnel:attribute(x, opts)
  local who = "NoiseTunnel"
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  local nt_type = opts.nt_type or "smoothgrad"
  if not NT_TYPES[nt_type] then
    error(("%s: nt_type must be 'smoothgrad', 'smoothgrad_sq' or 'vargrad', got '%s'"):format(who, tostring(nt_type)), 2)
  end
  local nt = C.positive_int(who, "nt_samples", opts.nt_samples, 5)
  local bs = C.positive_int(who, "nt_samples_batch_size", opts.nt_samples_batch_size, nt)
  local stdevs = opts.stdevs == nil and 1.0 or opts.stdevs
  if type(stdevs) ~= "number" or stdevs < 0 then
    error(("%s: stdevs must be a number >= 0, got %s"):format(who, tostring(stdevs)), 2)
  end
  if opts.return_convergence_delta then
    error(who .. ": return_convergence_delta is not supported through NoiseTunnel (call the method itself)", 2)
  end
  local rest = {}
  for k, v in pairs(opts) do if self.method.options[k] then rest[k] = v end end
  local n = x:size(1)
  local targets = C.targets(who, opts.target, self.forward, x)
  local draw = opts.draw_baseline_from_distrib
  local b = rest.baselines
  if draw and not av.is_tensor(b) then
    error(who .. ": draw_baseline_from_distrib needs baselines as a tensor (a distribution, B x ...)", 2)
  end
  if av.is_tensor(b) and not draw then b = C.baselines(who, b, x) end
  x = x:detach()
  return C.with_seed(opts.seed, function()
    local sum, sumsq
    local left = nt
    while left > 0 do
      local k = math.min(bs, left)
      left = left - k
      local parts = {}
      for j = 1, k do parts[j] = stdevs > 0 and x + av.randn_like(x) * stdevs or x:clone() end
      local xb = k == 1 and parts[1] or av.cat(parts, 1)
      local o = {}
      for key, v in pairs(rest) do o[key] = v end
      o.target = C.repeat_list(targets, k)
      if draw then
        local idx = av.randint(1, b:size(1) + 1, {k * n})
        o.baselines = b:index_select(1, idx)
      elseif av.is_tensor(b) then
        local bp = {}
        for j = 1, k do bp[j] = b end
        o.baselines = k == 1 and b or av.cat(bp, 1)
      end
      local a = self.method:attribute(xb, o)
      local sz = a:size()
      sz[1] = n
      local a3 = a:double():reshape(k, table.unpack(sz))
      local s = a3:sum(1)
      sum = sum and sum + s or s
      if nt_type ~= "smoothgrad" then
        local s2 = (a3 * a3):sum(1)
        sumsq = sumsq and sumsq + s2 or s2
      end
    end
    local mean = sum / nt
    local r
    if nt_type == "smoothgrad" then r = mean
    elseif nt_type == "smoothgrad_sq" then r = sumsq / nt
    else r = sumsq / nt - mean * mean end
    return r:to(x:dtype())
  end)
end

------------------------------------------------------------------------------
-- GradientShap

local GradientShap = class("GradientShap")
GradientShap.options = C.set({"baselines", "n_samples", "stdevs", "target", "return_convergence_delta", "seed"})
local SHAP_ROWS = 32 -- rows per forward; every draw is made first, so the result does not depend on it

--- interpret.GradientShap(forward_func, {multiply_by_inputs = true}) -> object;
-- :attribute(x, {baselines = B x C x H x W tensor (required: a distribution), n_samples = 5, stdevs = 0.0,
--   target, return_convergence_delta = false, seed = nil}) -> attributions [, delta]
-- Captum's expected gradients: for each of n_samples draws per example, a noisy input xn = x + N(0, stdevs^2),
-- a baseline row b drawn from baselines and alpha ~ U[0, 1): (xn - b) * grad(b + alpha (xn - b)), averaged.
-- delta (float64, n_samples * N, sample-major) = sum(attribution) - (f(xn) - f(b)) per draw.
function interpret.GradientShap(f, opts)
  opts = C.check_opts("GradientShap", opts, C.set({"multiply_by_inputs"}))
  return setmetatable({forward = C.forward_fn("GradientShap", f), raw = f,
                       multiply_by_inputs = opts.multiply_by_inputs ~= false}, GradientShap)
end

function GradientShap:attribute(x, opts)
  local who = "GradientShap"
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  local b = opts.baselines
  if not av.is_tensor(b) then
    error(who .. ": baselines must be a tensor of B x (the input's size without the batch) (a distribution of references)", 2)
  end
  local xs, bs = x:size(), b:size()
  local same = #xs == #bs
  for d = 2, #xs do same = same and xs[d] == bs[d] end
  if not same then
    error(("%s: baselines of size %s do not match the input of size %s (give B x %s)"):format(who, C.shape(b),
      C.shape(x), table.concat(xs, "x", 2)), 2)
  end
  local ns = C.positive_int(who, "n_samples", opts.n_samples, 5)
  local stdevs = opts.stdevs or 0.0
  if type(stdevs) ~= "number" or stdevs < 0 then
    error(("%s: stdevs must be a number >= 0, got %s"):format(who, tostring(stdevs)), 2)
  end
  local f = self.forward
  local n = x:size(1)
  local targets = C.targets(who, opts.target, f, x)
  x = x:detach()
  b = b:detach():to(x:dtype())
  local rows = ns * n
  -- every draw first (noise, baseline rows, alphas), then the gradients in chunks
  local xn, bsel, alpha = C.with_seed(opts.seed, function()
    local parts = {}
    for j = 1, ns do parts[j] = stdevs > 0 and x + av.randn_like(x) * stdevs or x end
    local xn_ = ns == 1 and parts[1]:clone() or av.cat(parts, 1)
    local idx = av.randint(1, b:size(1) + 1, {rows})
    local shape = {rows}
    for d = 2, #xs do shape[d] = 1 end
    return xn_, b:index_select(1, idx), av.rand(rows, {dtype = x:dtype()}):view(table.unpack(shape))
  end)
  local all_targets = C.repeat_list(targets, ns)
  local grads = {}
  local params = C.params(self.raw)
  local chunk = math.max(n, SHAP_ROWS)
  for r0 = 1, rows, chunk do
    local k = math.min(chunk, rows - r0 + 1)
    local xr, br, ar = xn:narrow(1, r0, k), bsel:narrow(1, r0, k), alpha:narrow(1, r0, k)
    local tg = table.move(all_targets, r0, r0 + k - 1, 1, {})
    grads[#grads + 1] = (C.input_grad(who, f, br + (xr - br) * ar, tg, 0, params))
  end
  local g = #grads == 1 and grads[1] or av.cat(grads, 1)
  local per = self.multiply_by_inputs and (xn - bsel) * g or g
  local sz = x:size()
  local attr = per:double():reshape(ns, table.unpack(sz)):mean(1):to(x:dtype())
  if opts.return_convergence_delta then
    local delta = C.sum_rest(per) - (C.scores(who, f, xn, all_targets) - C.scores(who, f, bsel, all_targets))
    return attr, delta
  end
  return attr
end

------------------------------------------------------------------------------
-- the registry

local layer = require "aviary.interpret.attr_layer"
local perturb = require "aviary.interpret.attr_perturb"
layer.install(interpret)
perturb.install(interpret)

local NAMES = {"Saliency", "InputXGradient", "IntegratedGradients", "NoiseTunnel", "GradientShap", "Occlusion",
               "GuidedBackprop", "Deconvolution", "LayerGradCam", "GuidedGradCam", "LayerActivation",
               "LayerIntegratedGradients", "ShapleyValueSampling"}

--- interpret.methods() -> the names of the attribution methods (constructors of this module)
function interpret.methods()
  local out = {}
  for i, n in ipairs(NAMES) do out[i] = n end
  return out
end

--- interpret.get(name) -> the method's constructor; an unknown name is an error suggesting the nearest
function interpret.get(name)
  for _, n in ipairs(NAMES) do if n == name then return interpret[n] end end
  local near = require("aviary.util").nearest(tostring(name), NAMES)
  error(("interpret.get: unknown method '%s' (did you mean '%s'?; methods: %s)"):format(tostring(name), near,
    table.concat(NAMES, ", ")), 2)
end

return interpret
