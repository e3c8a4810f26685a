--- aviary.models.googlenet: torchvision 0.14's GoogLeNet (Inception v1)
-- without the auxiliary classifiers, as
-- `torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)`:
-- the same modules, state_dict names and order (no aux1/aux2), parameter
-- count (6,624,904 with 1000 classes) and initialisation (trunc_normal_
-- std 0.01 in [-2, 2] for every convolution and linear weight, batch norm
-- weight 1 and bias 0, the fc bias as nn.Linear's default).
--   local net = models.create("googlenet", {num_classes = 200, dropout = 0.2, transform_input = false})
-- transform_input = true maps ImageNet-normalised input to the [-1, 1]
-- scaling the original (ported) weights expect, as torchvision does.
-- torchvision's googlenet(weights=<ImageNet weights>) switches transform_input on
-- unless told otherwise: pass transform_input = true with those weights to
-- get its logits.
local av = require "aviary"
local nn = require "aviary.nn"
local init = require "aviary.nn.init"
local models = require "aviary.models"

local relu = models.relu
local BasicConv2d = models.BasicConv2d

local Inception = nn.Module:extend("Inception")
function Inception:__init(cin, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
  self.branch1 = BasicConv2d(cin, ch1x1, 1)
  self.branch2 = nn.Sequential(BasicConv2d(cin, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, {padding = 1}))
  -- torchvision's "5x5" branch uses a 3x3 convolution (kept for its weights)
  self.branch3 = nn.Sequential(BasicConv2d(cin, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3, {padding = 1}))
  self.branch4 = nn.Sequential(nn.MaxPool2d(3, {stride = 1, padding = 1, ceil_mode = true}),
    BasicConv2d(cin, pool_proj, 1))
end
function Inception:forward(x)
  return av.cat({self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)}, 2)
end

local transform_input = models.transform_input

local GoogLeNet = nn.Module:extend("GoogLeNet")
function GoogLeNet:__init(opts)
  opts = opts or {}
  local num_classes = opts.num_classes or 1000
  self.aux_logits = false
  self.transform_input = opts.transform_input and true or false

  self.conv1 = BasicConv2d(3, 64, 7, {stride = 2, padding = 3})
  self.maxpool1 = nn.MaxPool2d(3, {stride = 2, ceil_mode = true})
  self.conv2 = BasicConv2d(64, 64, 1)
  self.conv3 = BasicConv2d(64, 192, 3, {padding = 1})
  self.maxpool2 = nn.MaxPool2d(3, {stride = 2, ceil_mode = true})

  self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
  self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
  self.maxpool3 = nn.MaxPool2d(3, {stride = 2, ceil_mode = true})

  self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
  self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
  self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
  self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
  self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
  self.maxpool4 = nn.MaxPool2d(2, {stride = 2, ceil_mode = true})

  self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
  self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)

  self.avgpool = nn.AdaptiveAvgPool2d({1, 1})
  self.dropout = nn.Dropout(opts.dropout == nil and 0.2 or opts.dropout)
  self.fc = nn.Linear(1024, num_classes)

  if opts.init_weights ~= false then
    for _, m in ipairs(self:modules()) do
      local t = m:type_name()
      if t == "Conv2d" or t == "Linear" then
        init.trunc_normal_(m.weight, {mean = 0.0, std = 0.01, a = -2, b = 2})
      elseif t == "BatchNorm2d" then
        init.constant_(m.weight, 1)
        init.constant_(m.bias, 0)
      end
    end
  end
end

function GoogLeNet:forward(x)
  if self.transform_input then x = transform_input(x) end
  x = self.conv1(x)
  x = self.maxpool1(x)
  x = self.conv2(x)
  x = self.conv3(x)
  x = self.maxpool2(x)

  x = self.inception3a(x)
  x = self.inception3b(x)
  x = self.maxpool3(x)
  x = self.inception4a(x)
  x = self.inception4b(x)
  x = self.inception4c(x)
  x = self.inception4d(x)
  x = self.inception4e(x)
  x = self.maxpool4(x)
  x = self.inception5a(x)
  x = self.inception5b(x)

  x = self.avgpool(x)
  x = x:flatten(2)
  x = self.dropout(x)
  return self.fc(x)
end

models.register("googlenet", {
  build = function(opts)
    return GoogLeNet({num_classes = opts.num_classes, dropout = opts.dropout, transform_input = opts.transform_input})
  end,
  head = "fc",
  family = "googlenet",
  input_size = 224,
  options = {dropout = 0.2, transform_input = false},
})

return {GoogLeNet = GoogLeNet, BasicConv2d = BasicConv2d, Inception = Inception, transform_input = transform_input}
