--- aviary.interpret.attr_layer: the layer methods of aviary.interpret (LayerGradCam, GuidedGradCam,
-- LayerActivation, LayerIntegratedGradients) and interpolate, installed into aviary.interpret.
-- Layers are named as in model:named_modules() ('layer4', 'layer4.1.conv2'); an unknown name is an error
-- from aviary.features.layer that lists the layers.
local av = require "aviary"
local F = require "aviary.nn.functional"
local C = require "aviary.interpret.attr_common"

local M = {}

local function class(name)
  return C.class(name, function(self) return ("interpret.%s(%s)"):format(self.name, self.layer_name) end)
end

-- model and layer checked; returns the layer module (errors name the method)
local function find_layer(who, model, name)
  if type(model) ~= "table" or type(model.named_modules) ~= "function" then
    error(("%s: expected an nn.Module model, got %s"):format(who, type(model)), 4)
  end
  if type(name) ~= "string" then error(("%s: layer name must be a string, got %s"):format(who, type(name)), 4) end
  local ok, mod = pcall(require("aviary.features").layer, model, name)
  if not ok then error(who .. ": " .. tostring(mod):gsub("^.-features: ", ""), 4) end
  return mod
end

-- runs fn() with a hook on the layer that captures its output (or its first input) in cap.a; when
-- replace is given, the output (or first input) is replaced by it. The hook is removed even on error.
local function with_layer(who, mod, to_input, cap, replace, fn)
  local handle
  if to_input then
    handle = mod:register_forward_pre_hook(function(_, inputs)
      cap.a = inputs[1]
      if replace then
        local args = {replace}
        for i = 2, inputs.n or #inputs do args[i] = inputs[i] end
        return args
      end
    end)
  else
    handle = mod:register_forward_hook(function(_, _, out)
      cap.a = out
      if replace then return replace end
    end)
  end
  local r = table.pack(pcall(fn))
  handle.remove()
  if not r[1] then error(r[2], 0) end
  if not av.is_tensor(cap.a) then
    error(("%s: the layer gave no tensor %s (was it called in forward?)"):format(who, to_input and "input" or "output"), 0)
  end
  return table.unpack(r, 2, r.n)
end

-- the layer's activation (output, or input with to_input) for x, without grad, cloned
local function activation(who, model, mod, to_input, x)
  local cap = {}
  with_layer(who, mod, to_input, cap, nil, function() return av.no_grad(function() return model(x) end) end)
  return cap.a:detach():clone()
end

------------------------------------------------------------------------------

local LayerGradCam = class("LayerGradCam")
LayerGradCam.options = C.set({"target", "relu_attributions", "attribute_to_layer_input"})

-- Grad-CAM of a resolved target list
function LayerGradCam:_cam(x, targets, relu, to_input)
  local who = self.name
  local cap = {}
  local A, g = C.frozen(C.params(self.model), with_layer, who, self.layer, to_input, cap, nil, function()
    local _ <close> = av.enable_grad()
    local xi = x:detach():clone():requires_grad_()
    local out = self.model(xi)
    local sel = C.select(who, out, targets)
    if not av.is_tensor(cap.a) then return nil end
    local gr = av.grad({sel:sum()}, {cap.a}, {allow_unused = true})[1]
    return cap.a:detach(), gr and gr:detach() or av.zeros_like(cap.a)
  end)
  local w = g
  if g:dim() > 2 then
    local dims = {}
    for d = 3, g:dim() do dims[#dims + 1] = d end
    w = g:mean(dims, true)
  end
  local cam = (w * A):sum(2, true)
  if relu then cam = cam:relu() end
  return cam
end

--- interpret.LayerGradCam(model, layer_name) -> object; :attribute(x, {target, relu_attributions = false,
-- attribute_to_layer_input = false}) -> N x 1 x h x w (the layer's spatial size): sum_k w_k A_k with
-- w_k = the mean over space of d score / d A_k (Selvaraju et al.; Captum's LayerGradCam)
function M.LayerGradCam(model, layer_name)
  local mod = find_layer("LayerGradCam", model, layer_name)
  return setmetatable({model = model, forward = C.forward_fn("LayerGradCam", model), layer = mod,
                       layer_name = layer_name}, LayerGradCam)
end

function LayerGradCam:attribute(x, opts)
  local who = self.name
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  local targets = C.targets(who, opts.target, self.forward, x)
  return self:_cam(x, targets, opts.relu_attributions == true, opts.attribute_to_layer_input == true)
end

--- interpret.interpolate(attr, {H, W}, mode = 'nearest' | 'bilinear') -> attr resized to H x W (Captum's
-- LayerAttribution.interpolate: F.interpolate, align_corners false)
function M.interpolate(attr, size, mode)
  local who = "interpolate"
  if not av.is_tensor(attr) or attr:dim() ~= 4 then
    error(who .. ": attr must be an N x C x h x w tensor", 2)
  end
  if type(size) ~= "table" or #size ~= 2 then error(who .. ": size must be {H, W}", 2) end
  mode = mode or "nearest"
  if mode ~= "nearest" and mode ~= "bilinear" then
    error(("%s: mode must be 'nearest' or 'bilinear', got '%s'"):format(who, tostring(mode)), 2)
  end
  return F.interpolate(attr, {size = {size[1], size[2]}, mode = mode})
end

local GuidedGradCam = class("GuidedGradCam")
GuidedGradCam.options = C.set({"target", "interpolate_mode", "attribute_to_layer_input"})

--- interpret.GuidedGradCam(model, layer_name) -> object; :attribute(x, {target, interpolate_mode = 'nearest',
-- attribute_to_layer_input = false}) -> x's size: GuidedBackprop * interpolate(Grad-CAM with ReLU, H x W)
function M.GuidedGradCam(model, layer_name)
  local mod = find_layer("GuidedGradCam", model, layer_name)
  return setmetatable({model = model, forward = C.forward_fn("GuidedGradCam", model), layer = mod,
                       layer_name = layer_name}, GuidedGradCam)
end

function GuidedGradCam:attribute(x, opts)
  local who = self.name
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  if x:dim() ~= 4 then error(who .. ": inputs must be N x C x H x W", 2) end
  local mode = opts.interpolate_mode or "nearest"
  if mode ~= "nearest" and mode ~= "bilinear" then
    error(("%s: interpolate_mode must be 'nearest' or 'bilinear', got '%s'"):format(who, tostring(mode)), 2)
  end
  local targets = C.targets(who, opts.target, self.forward, x)
  local gb = C.input_grad(who, self.forward, x, targets, 1, C.params(self.model))
  local cam = LayerGradCam._cam(self, x, targets, true, opts.attribute_to_layer_input == true)
  return gb * M.interpolate(cam, {x:size(3), x:size(4)}, mode)
end

local LayerActivation = class("LayerActivation")
LayerActivation.options = C.set({"attribute_to_layer_input"})

--- interpret.LayerActivation(model, layer_name) -> object; :attribute(x, {attribute_to_layer_input = false})
-- -> the layer's output (or input) for x, computed without grad
function M.LayerActivation(model, layer_name)
  local mod = find_layer("LayerActivation", model, layer_name)
  return setmetatable({model = model, forward = C.forward_fn("LayerActivation", model), layer = mod,
                       layer_name = layer_name}, LayerActivation)
end

function LayerActivation:attribute(x, opts)
  C.check_input(self.name, x)
  opts = C.check_opts(self.name, opts, self.options)
  return activation(self.name, self.model, self.layer, opts.attribute_to_layer_input == true, x)
end

local LayerIntegratedGradients = class("LayerIntegratedGradients")
LayerIntegratedGradients.options = C.set({"baselines", "target", "n_steps", "method", "internal_batch_size",
                                          "return_convergence_delta", "attribute_to_layer_input"})

--- interpret.LayerIntegratedGradients(model, layer_name, {multiply_by_inputs = true}) -> object;
-- :attribute(x, {baselines, target, n_steps = 50, method = 'gausslegendre', internal_batch_size,
--   return_convergence_delta = false, attribute_to_layer_input = false}) -> attributions of the layer's
-- output (its size) [, delta]: the gradients with respect to the layer's output integrated along the straight
-- path from its value at the baseline input to its value at x (the output is replaced through a forward hook
-- while x, repeated, is the model's input), times the difference of the two values
function M.LayerIntegratedGradients(model, layer_name, opts)
  local mod = find_layer("LayerIntegratedGradients", model, layer_name)
  opts = C.check_opts("LayerIntegratedGradients", opts, C.set({"multiply_by_inputs"}))
  return setmetatable({model = model, forward = C.forward_fn("LayerIntegratedGradients", model), layer = mod,
                       layer_name = layer_name, multiply_by_inputs = opts.multiply_by_inputs ~= false},
    LayerIntegratedGradients)
end

function LayerIntegratedGradients:attribute(x, opts)
  local who = self.name
  C.check_input(who, x)
  opts = C.check_opts(who, opts, self.options)
  local interpret = require "aviary.interpret"
  local n_steps = C.positive_int(who, "n_steps", opts.n_steps, 50)
  local method = interpret._check_method(who, opts.method or "gausslegendre")
  local base = C.baselines(who, opts.baselines, x)
  local targets = C.targets(who, opts.target, self.forward, x)
  local to_input = opts.attribute_to_layer_input == true
  local n = x:size(1)
  local ibs = C.positive_int(who, "internal_batch_size", opts.internal_batch_size, nil)
  local chunk = ibs and math.max(1, ibs // n) or n_steps
  x = x:detach()
  local a_x = activation(who, self.model, self.layer, to_input, x)
  local a_b = activation(who, self.model, self.layer, to_input, base)
  if a_x:size(1) ~= n then
    error(("%s: the layer's %s has size %s; it needs the batch as its first dim"):format(who,
      to_input and "input" or "output", C.shape(a_x)), 2)
  end
  local params = C.params(self.model)
  local total = interpret._integrate(who, a_b, a_x, n_steps, method, chunk, function(batch, k)
    local xs = {}
    for j = 1, k do xs[j] = x end
    local xin = k == 1 and x or av.cat(xs, 1)
    local tg = C.repeat_list(targets, k)
    local cap = {}
    local _ <close> = av.enable_grad()
    local leaf = batch:detach():requires_grad_()
    local g
    C.frozen(params, with_layer, who, self.layer, to_input, cap, leaf, function()
      local out = self.model(xin)
      local sel = C.select(who, out, tg)
      g = av.grad({sel:sum()}, {leaf}, {allow_unused = true})[1]
    end)
    return g and g:detach() or av.zeros_like(batch)
  end)
  local attr = self.multiply_by_inputs and total * (a_x - a_b) or total
  if opts.return_convergence_delta then
    local delta = C.sum_rest(attr) - (C.scores(who, self.forward, x, targets) - C.scores(who, self.forward, base, targets))
    return attr, delta
  end
  return attr
end

--- install(interpret) -- puts the layer methods and interpolate into aviary.interpret
function M.install(interpret)
  for _, n in ipairs({"LayerGradCam", "GuidedGradCam", "LayerActivation", "LayerIntegratedGradients", "interpolate"}) do
    interpret[n] = M[n]
  end
end

return M
