-- conv2d against PyTorch on the distinct convolution layers of torchvision's
-- ResNet-18 and ResNet-50 with a 112x112 input at batch 16 (after the 7x7
-- stem and the max pool the maps are 28, 14, 7 and 4 pixels wide): forward,
-- backward-data (gradient of the input) and backward-weight (gradient of the
-- weight) for each, then one TOTAL row that runs them all back to back.
-- PyTorch's backward halves are torch.ops.aten.convolution_backward with one
-- output each; aviary's are av.conv2d_input and av.conv2d_weight.

-- {in, out, kernel, stride, input size}; padding is kernel // 2
local layers = {
  {3, 64, 7, 2, 112},     -- stem (both)
  {64, 64, 3, 1, 28},     -- r18 layer1, r50 layer1 conv2
  {64, 128, 3, 2, 28},    -- r18 layer2.0.conv1
  {64, 128, 1, 2, 28},    -- r18 layer2.0.downsample
  {128, 128, 3, 1, 14},   -- r18 layer2, r50 layer2 conv2
  {128, 256, 3, 2, 14},   -- r18 layer3.0.conv1
  {128, 256, 1, 2, 14},   -- r18 layer3.0.downsample
  {256, 256, 3, 1, 7},    -- r18 layer3, r50 layer3 conv2
  {256, 512, 3, 2, 7},    -- r18 layer4.0.conv1
  {256, 512, 1, 2, 7},    -- r18 layer4.0.downsample
  {512, 512, 3, 1, 4},    -- r18 layer4, r50 layer4 conv2
  {64, 64, 1, 1, 28},     -- r50 layer1.0.conv1
  {64, 256, 1, 1, 28},    -- r50 layer1 conv3 and layer1.0.downsample
  {256, 64, 1, 1, 28},    -- r50 layer1.1-2.conv1
  {256, 128, 1, 1, 28},   -- r50 layer2.0.conv1
  {128, 128, 3, 2, 28},   -- r50 layer2.0.conv2
  {128, 512, 1, 1, 14},   -- r50 layer2 conv3
  {256, 512, 1, 2, 28},   -- r50 layer2.0.downsample
  {512, 128, 1, 1, 14},   -- r50 layer2.1-3.conv1
  {512, 256, 1, 1, 14},   -- r50 layer3.0.conv1
  {256, 256, 3, 2, 14},   -- r50 layer3.0.conv2
  {256, 1024, 1, 1, 7},   -- r50 layer3 conv3
  {512, 1024, 1, 2, 14},  -- r50 layer3.0.downsample
  {1024, 256, 1, 1, 7},   -- r50 layer3.1-5.conv1
  {1024, 512, 1, 1, 7},   -- r50 layer4.0.conv1
  {512, 512, 3, 2, 7},    -- r50 layer4.0.conv2
  {512, 2048, 1, 1, 4},   -- r50 layer4 conv3
  {1024, 2048, 1, 2, 7},  -- r50 layer4.0.downsample
  {2048, 512, 1, 1, 4},   -- r50 layer4.1-2.conv1
}
local BATCH = 16

return function(case, av)
  local av_all, torch_setup_all, torch_all = {}, {}, {}
  for i, l in ipairs(layers) do
    local ci, co, k, s, h = table.unpack(l)
    local p = k // 2
    local ho = (h + 2 * p - k) // s + 1
    local label = ("%d>%d %dx%d%s @%d"):format(ci, co, k, k, s > 1 and (" s" .. s) or "", h)
    local opts = {stride = s, padding = p}
    local tv = ("x%d"):format(i)
    local setup = ("%s = torch.randn(%d, %d, %d, %d); w%d = torch.randn(%d, %d, %d, %d); g%d = torch.randn(%d, %d, %d, %d)")
      :format(tv, BATCH, ci, h, h, i, co, ci, k, k, i, BATCH, co, ho, ho)
    local bwd = ("torch.ops.aten.convolution_backward(g%d, x%d, w%d, None, [%d, %d], [%d, %d], [1, 1], False, [0, 0], 1, [%%s])")
      :format(i, i, i, s, s, p, p)
    local fwd_stmt = ("F.conv2d(x%d, w%d, None, %d, %d)"):format(i, i, s, p)
    local bd_stmt, bw_stmt = bwd:format("True, False, False"), bwd:format("False, True, False")
    local function tensors()
      return av.randn(BATCH, ci, h, h), av.randn(co, ci, k, k), av.randn(BATCH, co, ho, ho)
    end
    local reps = h >= 28 and 5 or 7
    case("conv2d fwd " .. label, function()
      local x, w = tensors()
      return function() return av.conv2d(x, w, nil, opts) end
    end, setup, fwd_stmt, reps)
    case("conv2d bwd-data " .. label, function()
      local _, w, g = tensors()
      local size = {BATCH, ci, h, h}
      return function() return av.conv2d_input(size, w, g, opts) end
    end, setup, bd_stmt, reps)
    case("conv2d bwd-weight " .. label, function()
      local x, _, g = tensors()
      local size = {co, ci, k, k}
      return function() return av.conv2d_weight(x, size, g, opts) end
    end, setup, bw_stmt, reps)
    av_all[#av_all + 1] = function()
      local x, w, g = tensors()
      local xs, ws = {BATCH, ci, h, h}, {co, ci, k, k}
      return function()
        av.conv2d(x, w, nil, opts)
        av.conv2d_input(xs, w, g, opts)
        av.conv2d_weight(x, ws, g, opts)
      end
    end
    torch_setup_all[#torch_setup_all + 1] = setup
    torch_all[#torch_all + 1] = fwd_stmt .. "; " .. bd_stmt .. "; " .. bw_stmt
  end
  case("conv2d TOTAL (all rows above)", function()
    local fns = {}
    for i, mk in ipairs(av_all) do fns[i] = mk() end
    return function()
      for _, f in ipairs(fns) do f() end
    end
  end, table.concat(torch_setup_all, "\n"), table.concat(torch_all, "\n"), 3, 1,
    ("%d layers x 3 passes, batch %d"):format(#layers, BATCH))
end
