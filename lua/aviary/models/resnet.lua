--- aviary.models.resnet: ResNet, ResNeXt and Wide ResNet as torchvision 0.14
-- (torchvision/models/resnet.py): the same modules in the same order, so
-- state_dict names, shapes and parameter counts are torchvision's, the same
-- forward and the same default initialisation (kaiming_normal_ fan_out/relu
-- on convolutions, batch norm weight 1 and bias 0, torch's default Linear
-- init for fc; zero_init_residual zeroes the last BN weight of each block).
--   local net = models.create("resnet50", {num_classes = 200})
-- Registers resnet18/34/50/101/152, resnext50_32x4d, resnext101_32x8d and
-- wide_resnet50_2 (head 'fc', options zero_init_residual=false).
local av = require "aviary"
local nn = require "aviary.nn"
local init = require "aviary.nn.init"
local models = require "aviary.models"

local relu = av.relu
local is_grad_enabled = av.is_grad_enabled

local resnet = {}

local function conv3x3(cin, cout, stride, groups, dilation)
  dilation = dilation or 1
  return nn.Conv2d(cin, cout, 3, {stride = stride or 1, padding = dilation, groups = groups or 1, bias = false,
                                  dilation = dilation})
end

local function conv1x1(cin, cout, stride)
  return nn.Conv2d(cin, cout, 1, {stride = stride or 1, bias = false})
end

-- relu(t) of a fresh batch-norm result that nothing else holds: in place
-- (torch's ReLU(inplace=True)) unless autograd records t's graph
local function relu_fresh(t)
  if t.requires_grad and is_grad_enabled() then return relu(t) end
  return t:relu_()
end

-- relu(out + identity), in place on the fresh `out` as torch's
-- `out += identity; relu_(out)` unless autograd records either input's graph
local function add_relu(out, identity)
  if (out.requires_grad or identity.requires_grad) and is_grad_enabled() then
    return relu(out + identity)
  end
  return out:add_(identity):relu_()
end
resnet._relu_fresh, resnet._add_relu = relu_fresh, add_relu

-- BasicBlock(inplanes, planes, stride=1, downsample=nil, groups=1, base_width=64, dilation=1)
local BasicBlock = nn.Module:extend("BasicBlock")
BasicBlock.expansion = 1
resnet.BasicBlock = BasicBlock

function BasicBlock:__init(inplanes, planes, stride, downsample, groups, base_width, dilation)
  stride, groups, base_width, dilation = stride or 1, groups or 1, base_width or 64, dilation or 1
  if groups ~= 1 or base_width ~= 64 then error("BasicBlock only supports groups=1 and base_width=64", 3) end
  if dilation > 1 then error("Dilation > 1 not supported in BasicBlock", 3) end
  self.conv1 = conv3x3(inplanes, planes, stride)
  self.bn1 = nn.BatchNorm2d(planes)
  self.relu = nn.ReLU({inplace = true})
  self.conv2 = conv3x3(planes, planes)
  self.bn2 = nn.BatchNorm2d(planes)
  self.downsample = downsample
  self.stride = stride
end

function BasicBlock:forward(x)
  local out = relu_fresh(self.bn1(self.conv1(x)))
  out = self.bn2(self.conv2(out))
  local ds = self.downsample
  return add_relu(out, ds and ds(x) or x)
end

-- Bottleneck(inplanes, planes, stride=1, downsample=nil, groups=1, base_width=64, dilation=1)
local Bottleneck = nn.Module:extend("Bottleneck")
Bottleneck.expansion = 4
resnet.Bottleneck = Bottleneck

function Bottleneck:__init(inplanes, planes, stride, downsample, groups, base_width, dilation)
  stride, groups, base_width, dilation = stride or 1, groups or 1, base_width or 64, dilation or 1
  local width = math.floor(planes * (base_width / 64.0)) * groups
  self.conv1 = conv1x1(inplanes, width)
  self.bn1 = nn.BatchNorm2d(width)
  self.conv2 = conv3x3(width, width, stride, groups, dilation)
  self.bn2 = nn.BatchNorm2d(width)
  self.conv3 = conv1x1(width, planes * Bottleneck.expansion)
  self.bn3 = nn.BatchNorm2d(planes * Bottleneck.expansion)
  self.relu = nn.ReLU({inplace = true})
  self.downsample = downsample
  self.stride = stride
end

function Bottleneck:forward(x)
  local out = relu_fresh(self.bn1(self.conv1(x)))
  out = relu_fresh(self.bn2(self.conv2(out)))
  out = self.bn3(self.conv3(out))
  local ds = self.downsample
  return add_relu(out, ds and ds(x) or x)
end

local ResNet = nn.Module:extend("ResNet")
resnet.ResNet = ResNet

--- ResNet(block, layers, {num_classes=1000, zero_init_residual=false, groups=1,
-- width_per_group=64, replace_stride_with_dilation={false, false, false}})
function ResNet:__init(block, layers, opts)
  opts = opts or {}
  local num_classes = opts.num_classes or 1000
  local rswd = opts.replace_stride_with_dilation or {false, false, false}
  if #rswd ~= 3 then error("replace_stride_with_dilation should be nil or a 3-element list", 3) end
  self.inplanes = 64
  self.dilation = 1
  self.groups = opts.groups or 1
  self.base_width = opts.width_per_group or 64
  self.conv1 = nn.Conv2d(3, self.inplanes, 7, {stride = 2, padding = 3, bias = false})
  self.bn1 = nn.BatchNorm2d(self.inplanes)
  self.relu = nn.ReLU({inplace = true})
  self.maxpool = nn.MaxPool2d(3, {stride = 2, padding = 1})
  self.layer1 = self:_make_layer(block, 64, layers[1])
  self.layer2 = self:_make_layer(block, 128, layers[2], 2, rswd[1])
  self.layer3 = self:_make_layer(block, 256, layers[3], 2, rswd[2])
  self.layer4 = self:_make_layer(block, 512, layers[4], 2, rswd[3])
  self.avgpool = nn.AdaptiveAvgPool2d({1, 1})
  self.fc = nn.Linear(512 * block.expansion, num_classes)

  for _, m in ipairs(self:modules()) do
    local t = m:type_name()
    if t == "Conv2d" then
      init.kaiming_normal_(m.weight, {mode = "fan_out", nonlinearity = "relu"})
    elseif t == "BatchNorm2d" then
      init.constant_(m.weight, 1)
      init.constant_(m.bias, 0)
    end
  end
  if opts.zero_init_residual then
    for _, m in ipairs(self:modules()) do
      local t = m:type_name()
      if t == "Bottleneck" and m.bn3.weight ~= nil then
        init.constant_(m.bn3.weight, 0)
      elseif t == "BasicBlock" and m.bn2.weight ~= nil then
        init.constant_(m.bn2.weight, 0)
      end
    end
  end
end

function ResNet:_make_layer(block, planes, blocks, stride, dilate)
  stride = stride or 1
  local downsample
  local previous_dilation = self.dilation
  if dilate then
    self.dilation = self.dilation * stride
    stride = 1
  end
  if stride ~= 1 or self.inplanes ~= planes * block.expansion then
    downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
      nn.BatchNorm2d(planes * block.expansion))
  end
  local layers = {block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation)}
  self.inplanes = planes * block.expansion
  for _ = 2, blocks do
    layers[#layers + 1] = block(self.inplanes, planes, 1, nil, self.groups, self.base_width, self.dilation)
  end
  return nn.Sequential(table.unpack(layers))
end

function ResNet:forward(x)
  x = self.maxpool(relu_fresh(self.bn1(self.conv1(x))))
  x = self.layer1(x)
  x = self.layer2(x)
  x = self.layer3(x)
  x = self.layer4(x)
  x = self.avgpool(x):flatten(2)
  return self.fc(x)
end

local configs = {
  {"resnet18", BasicBlock, {2, 2, 2, 2}},
  {"resnet34", BasicBlock, {3, 4, 6, 3}},
  {"resnet50", Bottleneck, {3, 4, 6, 3}},
  {"resnet101", Bottleneck, {3, 4, 23, 3}},
  {"resnet152", Bottleneck, {3, 8, 36, 3}},
  {"resnext50_32x4d", Bottleneck, {3, 4, 6, 3}, 32, 4},
  {"resnext101_32x8d", Bottleneck, {3, 4, 23, 3}, 32, 8},
  {"wide_resnet50_2", Bottleneck, {3, 4, 6, 3}, 1, 128},
}

for _, c in ipairs(configs) do
  local name, block, layers, groups, wpg = c[1], c[2], c[3], c[4], c[5]
  models.register(name, {
    build = function(opts)
      return ResNet(block, layers, {num_classes = opts.num_classes, zero_init_residual = opts.zero_init_residual,
                                    groups = groups, width_per_group = wpg})
    end,
    head = "fc",
    family = "resnet",
    input_size = 224,
    options = {zero_init_residual = false},
  })
end

return resnet
