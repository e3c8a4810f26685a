--- aviary.models.densenet: torchvision 0.14's DenseNet-BC models
-- (densenet121, densenet161, densenet169, densenet201) with torchvision's
-- modules, state_dict names and order (features.denseblock1.denselayer1.norm1.weight
-- ...; the current names, which torchvision's loader maps the old 'norm.1'
-- checkpoint names to), parameter counts and initialisation
-- (kaiming_normal_ fan_in convolutions, batch norm weight 1 and bias 0,
-- classifier bias 0 with nn.Linear's default weight).
--   local net = models.create("densenet121", {num_classes = 200})
-- Options: drop_rate = 0 (dropout after each dense layer, as torchvision's
-- kwarg); memory_efficient is accepted and ignored (torchvision's gradient
-- checkpointing changes memory use, not the result).
local av = require "aviary"
local nn = require "aviary.nn"
local F = require "aviary.nn.functional"
local init = require "aviary.nn.init"
local models = require "aviary.models"

local relu = models.relu

local DenseLayer = nn.Module:extend("_DenseLayer")
function DenseLayer:__init(cin, growth_rate, bn_size, drop_rate)
  self.norm1 = nn.BatchNorm2d(cin)
  self.relu1 = nn.ReLU({inplace = true})
  self.conv1 = nn.Conv2d(cin, bn_size * growth_rate, 1, {bias = false})
  self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
  self.relu2 = nn.ReLU({inplace = true})
  self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, {padding = 1, bias = false})
  self.drop_rate = drop_rate or 0
end
-- x: the concatenation of the block's input and the earlier layers' outputs
function DenseLayer:forward(x)
  local y = self.conv1(relu(self.norm1(x)))
  y = self.conv2(relu(self.norm2(y)))
  if self.drop_rate > 0 then y = F.dropout(y, {p = self.drop_rate, training = self.training}) end
  return y
end

-- torchvision's _DenseBlock (a ModuleDict of denselayer1..n)
local DenseBlock = nn.Module:extend("_DenseBlock")
function DenseBlock:__init(num_layers, cin, bn_size, growth_rate, drop_rate)
  for i = 1, num_layers do
    self:add_module("denselayer" .. i, DenseLayer(cin + (i - 1) * growth_rate, growth_rate, bn_size, drop_rate))
  end
end
function DenseBlock:forward(x)
  -- torchvision concatenates [input, out1, ..., out(i-1)] afresh before
  -- layer i and once more at the end; appending each new output to the
  -- running concatenation gives the same tensors with one cat per layer
  local mods = self._modules
  for _, k in ipairs(mods.keys) do
    x = av.cat({x, mods.map[k](x)}, 2)
  end
  return x
end

-- torchvision's _Transition (a Sequential of norm, relu, conv, pool)
local Transition = nn.Sequential:extend("_Transition")
function Transition:__init(cin, cout)
  self:add(nn.BatchNorm2d(cin), "norm")
  self:add(nn.ReLU({inplace = true}), "relu")
  self:add(nn.Conv2d(cin, cout, 1, {bias = false}), "conv")
  self:add(nn.AvgPool2d(2, {stride = 2}), "pool")
end
function Transition:forward(x)
  return self.pool(self.conv(relu(self.norm(x))))
end

local DenseNet = nn.Module:extend("DenseNet")
--- DenseNet({growth_rate=32, block_config={6,12,24,16}, num_init_features=64, bn_size=4, drop_rate=0, num_classes=1000})
function DenseNet:__init(opts)
  opts = opts or {}
  local growth_rate = opts.growth_rate or 32
  local block_config = opts.block_config or {6, 12, 24, 16}
  local num_init_features = opts.num_init_features or 64
  local bn_size = opts.bn_size or 4
  local drop_rate = opts.drop_rate or 0
  local num_classes = opts.num_classes or 1000

  local features = nn.Sequential()
  features:add(nn.Conv2d(3, num_init_features, 7, {stride = 2, padding = 3, bias = false}), "conv0")
  features:add(nn.BatchNorm2d(num_init_features), "norm0")
  features:add(nn.ReLU({inplace = true}), "relu0")
  features:add(nn.MaxPool2d(3, {stride = 2, padding = 1}), "pool0")
  local nf = num_init_features
  for i, num_layers in ipairs(block_config) do
    features:add(DenseBlock(num_layers, nf, bn_size, growth_rate, drop_rate), "denseblock" .. i)
    nf = nf + num_layers * growth_rate
    if i ~= #block_config then
      features:add(Transition(nf, nf // 2), "transition" .. i)
      nf = nf // 2
    end
  end
  features:add(nn.BatchNorm2d(nf), "norm5")
  self.features = features
  self.classifier = nn.Linear(nf, num_classes)

  for _, m in ipairs(self:modules()) do
    local t = m:type_name()
    if t == "Conv2d" then
      init.kaiming_normal_(m.weight)
    elseif t == "BatchNorm2d" then
      init.constant_(m.weight, 1)
      init.constant_(m.bias, 0)
    elseif t == "Linear" then
      init.constant_(m.bias, 0)
    end
  end
end

function DenseNet:forward(x)
  local f = self.features(x)
  local out = relu(f)
  out = F.adaptive_avg_pool2d(out, {1, 1})
  out = out:flatten(2)
  return self.classifier(out)
end

local configs = {
  densenet121 = {32, {6, 12, 24, 16}, 64},
  densenet161 = {48, {6, 12, 36, 24}, 96},
  densenet169 = {32, {6, 12, 32, 32}, 64},
  densenet201 = {32, {6, 12, 48, 32}, 64},
}
for name, c in pairs(configs) do
  models.register(name, {
    build = function(opts)
      return DenseNet({growth_rate = c[1], block_config = c[2], num_init_features = c[3], num_classes = opts.num_classes,
                       drop_rate = opts.drop_rate})
    end,
    head = "classifier",
    family = "densenet",
    input_size = 224,
    options = {drop_rate = 0, memory_efficient = false},
  })
end

return {DenseNet = DenseNet, DenseBlock = DenseBlock, DenseLayer = DenseLayer, Transition = Transition}
