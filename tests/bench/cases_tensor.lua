-- Step 1 benchmarks: GEMM, broadcasting elementwise ops, reductions, call overhead.
return function(case, av)
  case("matmul f32 1024x1024", function()
    local a, b = av.randn(1024, 1024), av.randn(1024, 1024)
    return function() return av.matmul(a, b) end
  end, "a = torch.randn(1024, 1024); b = torch.randn(1024, 1024)", "torch.matmul(a, b)", 9)
  case("matmul f32 2048x2048", function()
    local a, b = av.randn(2048, 2048), av.randn(2048, 2048)
    return function() return av.matmul(a, b) end
  end, "a = torch.randn(2048, 2048); b = torch.randn(2048, 2048)", "torch.matmul(a, b)", 5)
  case("add 4096x4096 + 4096 (broadcast row)", function()
    local a, b = av.randn(4096, 4096), av.randn(4096)
    return function() return a + b end
  end, "a = torch.randn(4096, 4096); b = torch.randn(4096)", "a + b")
  case("mul 4096x4096 * 4096x1 (broadcast col)", function()
    local a, b = av.randn(4096, 4096), av.randn(4096, 1)
    return function() return a * b end
  end, "a = torch.randn(4096, 4096); b = torch.randn(4096, 1)", "a * b")
  case("add 16M + 16M (same shape)", function()
    local a, b = av.randn(4096, 4096), av.randn(4096, 4096)
    return function() return a + b end
  end, "a = torch.randn(4096, 4096); b = torch.randn(4096, 4096)", "a + b")
  case("sum 4096x4096 over dim 1", function()
    local a = av.randn(4096, 4096)
    return function() return a:sum(1) end
  end, "a = torch.randn(4096, 4096)", "a.sum(0)")
  case("sum 4096x4096 over dim 2", function()
    local a = av.randn(4096, 4096)
    return function() return a:sum(2) end
  end, "a = torch.randn(4096, 4096)", "a.sum(1)")
  case("sum 4096x4096 all", function()
    local a = av.randn(4096, 4096)
    return function() return a:sum() end
  end, "a = torch.randn(4096, 4096)", "a.sum()")
  case("softmax-shaped exp/sum/div 4096x4096", function()
    local a = av.randn(4096, 4096)
    return function()
      local e = a:exp()
      return e / e:sum(2, true)
    end
  end, "a = torch.randn(4096, 4096)", "e = a.exp(); e / e.sum(1, keepdim=True)")
  case("per-call overhead: add of 4-element tensors", function()
    local a, b = av.randn(4), av.randn(4)
    return function()
      for _ = 1, 1000 do local _ = a + b end
    end
  end, "a = torch.randn(4); b = torch.randn(4)", "for _ in range(1000): a + b", 15, 1,
    "per 1000 calls")
end
