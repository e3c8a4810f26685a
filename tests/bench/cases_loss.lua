-- Linear heads, cross entropy and the softmax family, forward + backward
-- (gradients through av.grad / torch.autograd.grad, so .grad is untouched).
return function(case, av)
  local function fb(stmt) -- a torch statement run with grad recording on
    return "with torch.enable_grad():\n    " .. stmt:gsub("\n", "\n    ")
  end

  for _, s in ipairs({{16, 2048, 200}, {16, 512, 200}}) do
    local n, k, m = s[1], s[2], s[3]
    case(("linear fwd+bwd %dx%d . %dx%d"):format(n, k, m, k), function()
      local x = av.randn(n, k):requires_grad_(true)
      local w = (av.randn(m, k) * 0.02):requires_grad_(true)
      local b = av.zeros(m):requires_grad_(true)
      local g = av.randn(n, m)
      return function()
        local y = av.linear(x, w, b)
        return av.grad(y, {x, w, b}, {grad_outputs = g})
      end
    end, ("x = torch.randn(%d, %d, requires_grad=True); w = (torch.randn(%d, %d) * 0.02).requires_grad_(); "
      .. "b = torch.zeros(%d, requires_grad=True); g = torch.randn(%d, %d)"):format(n, k, m, k, m, n, m),
      fb("y = F.linear(x, w, b)\ntorch.autograd.grad(y, [x, w, b], g)"), 15, 20)
  end

  for _, s in ipairs({{16, 200}, {256, 200}, {16, 1000}}) do
    local n, c = s[1], s[2]
    case(("cross_entropy fwd+bwd %dx%d"):format(n, c), function()
      local x = av.randn(n, c):requires_grad_(true)
      local t = av.randint(1, c + 1, {n})
      return function()
        local l = av.cross_entropy(x, t)
        return av.grad(l, {x})
      end
    end, ("x = torch.randn(%d, %d, requires_grad=True); t = torch.randint(0, %d, (%d,))"):format(n, c, c, n),
      fb("l = F.cross_entropy(x, t)\ntorch.autograd.grad(l, [x])"), 15, 50)
  end

  for _, s in ipairs({{256, 1000, 15, 20}, {4096, 4096, 7, 1}}) do
    local n, c, reps, inner = s[1], s[2], s[3], s[4]
    for _, op in ipairs({"softmax", "log_softmax"}) do
      case(("%s fwd+bwd %dx%d"):format(op, n, c), function()
        local x = av.randn(n, c):requires_grad_(true)
        local g = av.randn(n, c)
        local f = av[op]
        return function()
          local y = f(x, 2)
          return av.grad(y, {x}, {grad_outputs = g})
        end
      end, ("x = torch.randn(%d, %d, requires_grad=True); g = torch.randn(%d, %d)"):format(n, c, n, c),
        fb(("y = F.%s(x, 1)\ntorch.autograd.grad(y, [x], g)"):format(op)), reps, inner)
    end
  end
end
