--- aviary.models.mobilenet: MobileNetV2 as torchvision 0.14
-- (torchvision/models/mobilenetv2.py): `features` (a Conv2dNormActivation
-- stem, 17 InvertedResidual blocks, a 1x1 Conv2dNormActivation to
-- last_channel) and `classifier` (Dropout, Linear), with torchvision's
-- module names, channel rounding (_make_divisible) and initialisation:
-- convolutions kaiming_normal_ fan_out with zero bias, batch norm 1/0,
-- Linear N(0, 0.01) with zero bias.
--   local net = models.create("mobilenet_v2", {num_classes = 200, width_mult = 1.0, dropout = 0.2})
-- Head 'classifier.1'.
local av = require "aviary"
local nn = require "aviary.nn"
local init = require "aviary.nn.init"
local models = require "aviary.models"

local mobilenet = {}

--- mobilenet.make_divisible(v, divisor, min_value=divisor) -> v rounded to a
-- multiple of divisor, never more than 10% below v (torchvision's _make_divisible)
function mobilenet.make_divisible(v, divisor, min_value)
  min_value = min_value or divisor
  local new_v = math.max(min_value, math.floor(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v then new_v = new_v + divisor end
  return math.tointeger(new_v)
end
local make_divisible = mobilenet.make_divisible

-- Conv2dNormActivation(in, out, {kernel_size=3, stride=1, padding=(k-1)//2*dilation,
-- groups=1, dilation=1, activation=nn.ReLU6, bias=false}): a Sequential of
-- Conv2d, BatchNorm2d and the activation, named "0", "1", "2" as torchvision's
local Conv2dNormActivation = nn.Sequential:extend("Conv2dNormActivation")
mobilenet.Conv2dNormActivation = Conv2dNormActivation

function Conv2dNormActivation:__init(cin, cout, opts)
  opts = opts or {}
  local k, dilation = opts.kernel_size or 3, opts.dilation or 1
  local padding = opts.padding or (k - 1) // 2 * dilation
  local conv = nn.Conv2d(cin, cout, k, {stride = opts.stride or 1, padding = padding, dilation = dilation,
                                        groups = opts.groups or 1, bias = opts.bias or false})
  local act = (opts.activation or nn.ReLU6)({inplace = true})
  nn.Sequential.__init(self, conv, nn.BatchNorm2d(cout), act)
  self.out_channels = cout
end

-- InvertedResidual(inp, oup, stride, expand_ratio)
local InvertedResidual = nn.Module:extend("InvertedResidual")
mobilenet.InvertedResidual = InvertedResidual

function InvertedResidual:__init(inp, oup, stride, expand_ratio)
  if stride ~= 1 and stride ~= 2 then error(("stride should be 1 or 2 instead of %s"):format(tostring(stride)), 3) end
  self.stride = stride
  -- Python's round() (half to even) of inp * expand_ratio
  local v = inp * expand_ratio
  local hidden = math.floor(v + 0.5)
  if hidden - v == 0.5 and hidden % 2 == 1 then hidden = hidden - 1 end
  hidden = math.tointeger(hidden)
  self.use_res_connect = stride == 1 and inp == oup
  local layers = {}
  if expand_ratio ~= 1 then
    layers[#layers + 1] = Conv2dNormActivation(inp, hidden, {kernel_size = 1})
  end
  layers[#layers + 1] = Conv2dNormActivation(hidden, hidden, {stride = stride, groups = hidden})
  layers[#layers + 1] = nn.Conv2d(hidden, oup, 1, {stride = 1, padding = 0, bias = false})
  layers[#layers + 1] = nn.BatchNorm2d(oup)
  self.conv = nn.Sequential(table.unpack(layers))
  self.out_channels = oup
  self._is_cn = stride > 1
end

function InvertedResidual:forward(x)
  if self.use_res_connect then
    local y = self.conv(x)
    -- in place on the fresh batch-norm output when no graph is recorded
    if (y.requires_grad or x.requires_grad) and av.is_grad_enabled() then return x + y end
    return y:add_(x)
  end
  return self.conv(x)
end

local MobileNetV2 = nn.Module:extend("MobileNetV2")
mobilenet.MobileNetV2 = MobileNetV2

--- MobileNetV2({num_classes=1000, width_mult=1.0, inverted_residual_setting=, round_nearest=8, dropout=0.2})
function MobileNetV2:__init(opts)
  opts = opts or {}
  local num_classes = opts.num_classes or 1000
  local width_mult = opts.width_mult or 1.0
  local round_nearest = opts.round_nearest or 8
  local dropout = opts.dropout == nil and 0.2 or opts.dropout
  local setting = opts.inverted_residual_setting or {
    {1, 16, 1, 1},
    {6, 24, 2, 2},
    {6, 32, 3, 2},
    {6, 64, 4, 2},
    {6, 96, 3, 1},
    {6, 160, 3, 2},
    {6, 320, 1, 1},
  }
  if #setting == 0 or #setting[1] ~= 4 then
    error("inverted_residual_setting should be non-empty or a 4-element list", 3)
  end
  if type(width_mult) ~= "number" or width_mult <= 0 then
    error(("mobilenet_v2: width_mult must be a positive number, got %s"):format(tostring(width_mult)), 3)
  end
  local input_channel = make_divisible(32 * width_mult, round_nearest)
  self.last_channel = make_divisible(1280 * math.max(1.0, width_mult), round_nearest)
  local features = {Conv2dNormActivation(3, input_channel, {stride = 2})}
  for _, s in ipairs(setting) do
    local t, c, n, st = s[1], s[2], s[3], s[4]
    local output_channel = make_divisible(c * width_mult, round_nearest)
    for i = 1, n do
      features[#features + 1] = InvertedResidual(input_channel, output_channel, i == 1 and st or 1, t)
      input_channel = output_channel
    end
  end
  features[#features + 1] = Conv2dNormActivation(input_channel, self.last_channel, {kernel_size = 1})
  self.features = nn.Sequential(table.unpack(features))
  self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))

  for _, m in ipairs(self:modules()) do
    local ty = m:type_name()
    if ty == "Conv2d" then
      init.kaiming_normal_(m.weight, {mode = "fan_out"})
      if m.bias ~= nil then init.zeros_(m.bias) end
    elseif ty == "BatchNorm2d" then
      init.ones_(m.weight)
      init.zeros_(m.bias)
    elseif ty == "Linear" then
      init.normal_(m.weight, 0, 0.01)
      init.zeros_(m.bias)
    end
  end
end

function MobileNetV2:forward(x)
  x = av.adaptive_avg_pool2d(self.features(x), {1, 1})
  return self.classifier(x:flatten(2))
end

models.register("mobilenet_v2", {
  build = function(opts)
    return MobileNetV2({num_classes = opts.num_classes, width_mult = opts.width_mult, dropout = opts.dropout})
  end,
  head = "classifier.1",
  family = "mobilenet",
  input_size = 224,
  options = {width_mult = 1.0, dropout = 0.2},
})

return mobilenet
