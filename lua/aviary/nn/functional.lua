--- aviary.nn.functional: the differentiable operators, named and parameterised
-- as torch.nn.functional, options in a trailing table:
--   local F = require "aviary.nn.functional"
--   local y = F.conv2d(x, w, b, {stride = 2, padding = 1})
-- Every function records the autograd graph when an input requires grad.
-- Class indices (cross_entropy targets, pooling indices) are 1-based.
local av = require "aviary"

local F = {}

-- operators implemented in C live in the core module; F names them
local names = {
  -- convolution, pooling, normalisation
  "conv2d", "batch_norm", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
  -- activations
  "relu", "sigmoid", "tanh", "leaky_relu", "elu", "gelu", "silu", "hardswish", "hardsigmoid", "relu6",
  "softplus", "softmax", "log_softmax",
  -- layers and regularisation
  "linear", "dropout",
  -- losses
  "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "mse_loss", "l1_loss",
  -- resampling
  "interpolate", "pad",
}
for _, n in ipairs(names) do F[n] = av[n] end

local function nearest(name) return require("aviary.util").nearest(name, names) end

return setmetatable(F, {
  __index = function(_, k)
    error(("aviary.nn.functional has no function '%s' (did you mean '%s'?)"):format(tostring(k), nearest(tostring(k))), 2)
  end,
})
