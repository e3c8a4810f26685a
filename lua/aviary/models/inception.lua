--- aviary.models.inception: torchvision 0.14's Inception v3 without the
-- auxiliary classifier, as
-- `torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True)`:
-- the same modules, state_dict names and order (no AuxLogits), parameter
-- count (23,834,568 with 1000 classes) and initialisation (trunc_normal_
-- std 0.1 in [-2, 2] for every convolution and linear weight, batch norm
-- weight 1 and bias 0, the fc bias as nn.Linear's default). Its input is
-- 299 x 299 (75 x 75 at the least).
--   local net = models.create("inception_v3", {num_classes = 200, dropout = 0.5, transform_input = false})
-- torchvision's inception_v3(weights=<ImageNet weights>) switches transform_input on
-- unless told otherwise: pass transform_input = true with those weights to
-- get its logits.
local av = require "aviary"
local nn = require "aviary.nn"
local F = require "aviary.nn.functional"
local init = require "aviary.nn.init"
local models = require "aviary.models"

local relu = models.relu
local BasicConv2d = models.BasicConv2d

local POOL3 = {stride = 1, padding = 1}    -- F.avg_pool2d(x, 3, stride=1, padding=1), count_include_pad
local DOWN3 = {stride = 2}                 -- F.max_pool2d(x, 3, stride=2)

local InceptionA = nn.Module:extend("InceptionA")
function InceptionA:__init(cin, pool_features)
  self.branch1x1 = BasicConv2d(cin, 64, 1)
  self.branch5x5_1 = BasicConv2d(cin, 48, 1)
  self.branch5x5_2 = BasicConv2d(48, 64, 5, {padding = 2})
  self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
  self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, {padding = 1})
  self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, {padding = 1})
  self.branch_pool = BasicConv2d(cin, pool_features, 1)
end
function InceptionA:forward(x)
  local b1 = self.branch1x1(x)
  local b5 = self.branch5x5_2(self.branch5x5_1(x))
  local b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
  local bp = self.branch_pool(F.avg_pool2d(x, 3, POOL3))
  return av.cat({b1, b5, b3, bp}, 2)
end

local InceptionB = nn.Module:extend("InceptionB")
function InceptionB:__init(cin)
  self.branch3x3 = BasicConv2d(cin, 384, 3, {stride = 2})
  self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
  self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, {padding = 1})
  self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, {stride = 2})
end
function InceptionB:forward(x)
  local b3 = self.branch3x3(x)
  local bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
  local bp = F.max_pool2d(x, 3, DOWN3)
  return av.cat({b3, bd, bp}, 2)
end

local InceptionC = nn.Module:extend("InceptionC")
function InceptionC:__init(cin, c7)
  self.branch1x1 = BasicConv2d(cin, 192, 1)
  self.branch7x7_1 = BasicConv2d(cin, c7, 1)
  self.branch7x7_2 = BasicConv2d(c7, c7, {1, 7}, {padding = {0, 3}})
  self.branch7x7_3 = BasicConv2d(c7, 192, {7, 1}, {padding = {3, 0}})
  self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
  self.branch7x7dbl_2 = BasicConv2d(c7, c7, {7, 1}, {padding = {3, 0}})
  self.branch7x7dbl_3 = BasicConv2d(c7, c7, {1, 7}, {padding = {0, 3}})
  self.branch7x7dbl_4 = BasicConv2d(c7, c7, {7, 1}, {padding = {3, 0}})
  self.branch7x7dbl_5 = BasicConv2d(c7, 192, {1, 7}, {padding = {0, 3}})
  self.branch_pool = BasicConv2d(cin, 192, 1)
end
function InceptionC:forward(x)
  local b1 = self.branch1x1(x)
  local b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
  local bd = self.branch7x7dbl_1(x)
  bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
  bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
  local bp = self.branch_pool(F.avg_pool2d(x, 3, POOL3))
  return av.cat({b1, b7, bd, bp}, 2)
end

local InceptionD = nn.Module:extend("InceptionD")
function InceptionD:__init(cin)
  self.branch3x3_1 = BasicConv2d(cin, 192, 1)
  self.branch3x3_2 = BasicConv2d(192, 320, 3, {stride = 2})
  self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
  self.branch7x7x3_2 = BasicConv2d(192, 192, {1, 7}, {padding = {0, 3}})
  self.branch7x7x3_3 = BasicConv2d(192, 192, {7, 1}, {padding = {3, 0}})
  self.branch7x7x3_4 = BasicConv2d(192, 192, 3, {stride = 2})
end
function InceptionD:forward(x)
  local b3 = self.branch3x3_2(self.branch3x3_1(x))
  local b7 = self.branch7x7x3_2(self.branch7x7x3_1(x))
  b7 = self.branch7x7x3_4(self.branch7x7x3_3(b7))
  local bp = F.max_pool2d(x, 3, DOWN3)
  return av.cat({b3, b7, bp}, 2)
end

local InceptionE = nn.Module:extend("InceptionE")
function InceptionE:__init(cin)
  self.branch1x1 = BasicConv2d(cin, 320, 1)
  self.branch3x3_1 = BasicConv2d(cin, 384, 1)
  self.branch3x3_2a = BasicConv2d(384, 384, {1, 3}, {padding = {0, 1}})
  self.branch3x3_2b = BasicConv2d(384, 384, {3, 1}, {padding = {1, 0}})
  self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
  self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, {padding = 1})
  self.branch3x3dbl_3a = BasicConv2d(384, 384, {1, 3}, {padding = {0, 1}})
  self.branch3x3dbl_3b = BasicConv2d(384, 384, {3, 1}, {padding = {1, 0}})
  self.branch_pool = BasicConv2d(cin, 192, 1)
end
function InceptionE:forward(x)
  local b1 = self.branch1x1(x)
  local b3 = self.branch3x3_1(x)
  local bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
  local bp = self.branch_pool(F.avg_pool2d(x, 3, POOL3))
  -- torchvision's nested cat([b1, cat([2a, 2b]), cat([3a, 3b]), bp]) in one copy
  return av.cat({b1, self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                 self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd), bp}, 2)
end

local transform_input = models.transform_input

local Inception3 = nn.Module:extend("Inception3")
function Inception3:__init(opts)
  opts = opts or {}
  local num_classes = opts.num_classes or 1000
  self.aux_logits = false
  self.transform_input = opts.transform_input and true or false
  self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, {stride = 2})
  self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
  self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, {padding = 1})
  self.maxpool1 = nn.MaxPool2d(3, {stride = 2})
  self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
  self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
  self.maxpool2 = nn.MaxPool2d(3, {stride = 2})
  self.Mixed_5b = InceptionA(192, 32)
  self.Mixed_5c = InceptionA(256, 64)
  self.Mixed_5d = InceptionA(288, 64)
  self.Mixed_6a = InceptionB(288)
  self.Mixed_6b = InceptionC(768, 128)
  self.Mixed_6c = InceptionC(768, 160)
  self.Mixed_6d = InceptionC(768, 160)
  self.Mixed_6e = InceptionC(768, 192)
  self.Mixed_7a = InceptionD(768)
  self.Mixed_7b = InceptionE(1280)
  self.Mixed_7c = InceptionE(2048)
  self.avgpool = nn.AdaptiveAvgPool2d({1, 1})
  self.dropout = nn.Dropout(opts.dropout == nil and 0.5 or opts.dropout)
  self.fc = nn.Linear(2048, num_classes)
  if opts.init_weights ~= false then
    for _, m in ipairs(self:modules()) do
      local t = m:type_name()
      if t == "Conv2d" or t == "Linear" then
        -- torchvision reads a `stddev` attribute of the layer; without the
        -- auxiliary classifier no layer has one, so 0.1 throughout
        init.trunc_normal_(m.weight, {mean = 0.0, std = rawget(m, "stddev") or 0.1, a = -2, b = 2})
      elseif t == "BatchNorm2d" then
        init.constant_(m.weight, 1)
        init.constant_(m.bias, 0)
      end
    end
  end
end

function Inception3:forward(x)
  if self.transform_input then x = transform_input(x) end
  x = self.Conv2d_1a_3x3(x)
  x = self.Conv2d_2a_3x3(x)
  x = self.Conv2d_2b_3x3(x)
  x = self.maxpool1(x)
  x = self.Conv2d_3b_1x1(x)
  x = self.Conv2d_4a_3x3(x)
  x = self.maxpool2(x)
  x = self.Mixed_5b(x)
  x = self.Mixed_5c(x)
  x = self.Mixed_5d(x)
  x = self.Mixed_6a(x)
  x = self.Mixed_6b(x)
  x = self.Mixed_6c(x)
  x = self.Mixed_6d(x)
  x = self.Mixed_6e(x)
  x = self.Mixed_7a(x)
  x = self.Mixed_7b(x)
  x = self.Mixed_7c(x)
  x = self.avgpool(x)
  x = self.dropout(x)
  x = x:flatten(2)
  return self.fc(x)
end

models.register("inception_v3", {
  build = function(opts)
    return Inception3({num_classes = opts.num_classes, dropout = opts.dropout, transform_input = opts.transform_input})
  end,
  head = "fc",
  family = "inception",
  input_size = 299,
  options = {dropout = 0.5, transform_input = false},
})

return {Inception3 = Inception3, BasicConv2d = BasicConv2d, InceptionA = InceptionA, InceptionB = InceptionB,
        InceptionC = InceptionC, InceptionD = InceptionD, InceptionE = InceptionE, transform_input = transform_input}
