--- aviary.models.vgg: VGG 11/13/16/19, with and without batch norm, as
-- torchvision 0.14 (torchvision/models/vgg.py): `features` (convolutions,
-- ReLUs and max pools, named "0", "1", ...), `avgpool` (adaptive 7x7) and
-- `classifier` (Linear 25088-4096, ReLU, Dropout, Linear 4096-4096, ReLU,
-- Dropout, Linear 4096-num_classes); torchvision's init_weights: convolutions
-- kaiming_normal_ fan_out/relu with zero bias, batch norm 1/0, Linear
-- weights N(0, 0.01) with zero bias.
--   local net = models.create("vgg16_bn", {num_classes = 200, dropout = 0.5})
-- Head 'classifier.6'.
local av = require "aviary"
local nn = require "aviary.nn"
local init = require "aviary.nn.init"
local models = require "aviary.models"

local vgg = {}

local ReLU = nn.ReLU   -- {inplace = true} runs in place when nothing records a graph

local cfgs = {
  A = {64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"},
  B = {64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"},
  D = {64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"},
  E = {64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"},
}
vgg.cfgs = cfgs

--- vgg.make_layers(cfg, batch_norm) -> the `features` Sequential
function vgg.make_layers(cfg, batch_norm)
  local layers = {}
  local cin = 3
  for _, v in ipairs(cfg) do
    if v == "M" then
      layers[#layers + 1] = nn.MaxPool2d(2, {stride = 2})
    else
      layers[#layers + 1] = nn.Conv2d(cin, v, 3, {padding = 1})
      if batch_norm then layers[#layers + 1] = nn.BatchNorm2d(v) end
      layers[#layers + 1] = ReLU({inplace = true})
      cin = v
    end
  end
  return nn.Sequential(table.unpack(layers))
end

local VGG = nn.Module:extend("VGG")
vgg.VGG = VGG

--- VGG(features, {num_classes=1000, init_weights=true, dropout=0.5})
function VGG:__init(features, opts)
  opts = opts or {}
  local num_classes = opts.num_classes or 1000
  local dropout = opts.dropout == nil and 0.5 or opts.dropout
  self.features = features
  self.avgpool = nn.AdaptiveAvgPool2d({7, 7})
  self.classifier = nn.Sequential(
    nn.Linear(512 * 7 * 7, 4096),
    ReLU({inplace = true}),
    nn.Dropout(dropout),
    nn.Linear(4096, 4096),
    ReLU({inplace = true}),
    nn.Dropout(dropout),
    nn.Linear(4096, num_classes))
  if opts.init_weights ~= false then
    for _, m in ipairs(self:modules()) do
      local t = m:type_name()
      if t == "Conv2d" then
        init.kaiming_normal_(m.weight, {mode = "fan_out", nonlinearity = "relu"})
        if m.bias ~= nil then init.constant_(m.bias, 0) end
      elseif t == "BatchNorm2d" then
        init.constant_(m.weight, 1)
        init.constant_(m.bias, 0)
      elseif t == "Linear" then
        init.normal_(m.weight, 0, 0.01)
        init.constant_(m.bias, 0)
      end
    end
  end
end

function VGG:forward(x)
  x = self.avgpool(self.features(x))
  return self.classifier(x:flatten(2))
end

for _, c in ipairs({{"vgg11", "A"}, {"vgg13", "B"}, {"vgg16", "D"}, {"vgg19", "E"}}) do
  for _, bn in ipairs({false, true}) do
    local name, cfg = c[1] .. (bn and "_bn" or ""), cfgs[c[2]]
    models.register(name, {
      build = function(opts)
        return VGG(vgg.make_layers(cfg, bn), {num_classes = opts.num_classes, dropout = opts.dropout})
      end,
      head = "classifier.6",
      family = "vgg",
      input_size = 224,
      options = {dropout = 0.5},
    })
  end
end

return vgg
