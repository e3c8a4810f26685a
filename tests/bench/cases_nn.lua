-- nn operator benchmarks at ResNet-18/50 shapes for batch 16 and 112x112
-- images: batch norm (training, forward + backward), relu through autograd,
-- max pooling 3x3 s2 p1 and global average pooling (forward + backward).
-- Both sides accumulate into .grad the same way (y:backward(g)).
return function(case, av)
  local function shape_str(s) return table.concat(s, "x") end
  local function tshape(s) return "(" .. table.concat(s, ", ") .. ")" end

  local bn_shapes = {{16, 64, 56, 56}, {16, 128, 14, 14}, {16, 256, 7, 7}, {16, 512, 4, 4}, {16, 2048, 4, 4}}
  for _, s in ipairs(bn_shapes) do
    case("batch_norm train fwd+bwd " .. shape_str(s), function()
      local C = s[2]
      local x = av.randn(s):requires_grad_(true)
      local w, b = av.ones(C):requires_grad_(true), av.zeros(C):requires_grad_(true)
      local rm, rv = av.zeros(C), av.ones(C)
      local g = av.randn(s)
      return function()
        local y = av.batch_norm(x, rm, rv, w, b, {training = true})
        y:backward(g)
      end
    end, ("x = torch.randn%s, requires_grad=True); C = %d; w = torch.ones(C, requires_grad=True); "
      .. "b = torch.zeros(C, requires_grad=True); rm = torch.zeros(C); rv = torch.ones(C); g = torch.randn%s")
      :format(tshape(s):sub(1, -2), s[2], tshape(s)),
      "with torch.enable_grad():\n    y = F.batch_norm(x, rm, rv, w, b, training=True)\n    y.backward(g)")
  end
  for _, s in ipairs({{16, 64, 56, 56}, {16, 256, 7, 7}}) do
    case("batch_norm eval fwd " .. shape_str(s), function()
      local C = s[2]
      local x, w, b, rm, rv = av.randn(s), av.ones(C), av.zeros(C), av.zeros(C), av.ones(C)
      return function() return av.batch_norm(x, rm, rv, w, b) end
    end, ("x = torch.randn%s; C = %d; w = torch.ones(C); b = torch.zeros(C); rm = torch.zeros(C); rv = torch.ones(C)")
      :format(tshape(s), s[2]), "F.batch_norm(x, rm, rv, w, b, training=False)")
  end

  for _, s in ipairs({{16, 64, 56, 56}, {16, 128, 14, 14}, {16, 512, 4, 4}, {16, 2048, 4, 4}}) do
    case("relu fwd+bwd " .. shape_str(s), function()
      local x = av.randn(s):requires_grad_(true)
      local g = av.randn(s)
      return function()
        local y = av.relu(x)
        y:backward(g)
      end
    end, ("x = torch.randn%s, requires_grad=True); g = torch.randn%s"):format(tshape(s):sub(1, -2), tshape(s)),
      "with torch.enable_grad():\n    y = F.relu(x)\n    y.backward(g)")
  end

  for _, s in ipairs({{16, 64, 56, 56}, {16, 64, 112, 112}}) do
    case("max_pool2d 3x3 s2 p1 fwd+bwd " .. shape_str(s), function()
      local x = av.randn(s):requires_grad_(true)
      local g = av.randn(s[1], s[2], s[3] // 2, s[4] // 2)
      return function()
        local y = av.max_pool2d(x, 3, {stride = 2, padding = 1})
        y:backward(g)
      end
    end, ("x = torch.randn%s, requires_grad=True); g = torch.randn(%d, %d, %d, %d)")
      :format(tshape(s):sub(1, -2), s[1], s[2], s[3] // 2, s[4] // 2),
      "with torch.enable_grad():\n    y = F.max_pool2d(x, 3, 2, 1)\n    y.backward(g)")
  end
  case("max_pool2d 3x3 s2 p1 fwd 16x64x56x56", function()
    local x = av.randn(16, 64, 56, 56)
    return function() return av.max_pool2d(x, 3, {stride = 2, padding = 1}) end
  end, "x = torch.randn(16, 64, 56, 56)", "F.max_pool2d(x, 3, 2, 1)")

  for _, s in ipairs({{16, 512, 4, 4}, {16, 2048, 4, 4}, {16, 512, 7, 7}}) do
    case("adaptive_avg_pool2d 1 fwd+bwd " .. shape_str(s), function()
      local x = av.randn(s):requires_grad_(true)
      local g = av.randn(s[1], s[2], 1, 1)
      return function()
        local y = av.adaptive_avg_pool2d(x, 1)
        y:backward(g)
      end
    end, ("x = torch.randn%s, requires_grad=True); g = torch.randn(%d, %d, 1, 1)")
      :format(tshape(s):sub(1, -2), s[1], s[2]),
      "with torch.enable_grad():\n    y = F.adaptive_avg_pool2d(x, 1)\n    y.backward(g)")
  end
end
