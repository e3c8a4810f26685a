--- aviary.onnx.ops: the ONNX operators an imported graph runs, each written
-- with aviary's differentiable ops (F.conv2d, F.batch_norm, av.matmul, ...) so
-- that autograd runs through an imported model. Shape-computing subgraphs
-- (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) run on small int64
-- tensors, so a dynamic batch size works.
-- Each op is fn(ctx, inputs, attrs, node) -> outputs (a list); inputs[i] is
-- nil for an absent optional input; attrs maps attribute names to values;
-- ctx = {opset =, training =, module =}.
local av = require "aviary"
local F = require "aviary.nn.functional"

local O = {}

local DTYPE = {[1] = "float32", [2] = "uint8", [3] = "int32", [5] = "int32", [6] = "int32", [7] = "int64",
               [9] = "uint8", [10] = "float16", [11] = "float64", [16] = "bfloat16"}
O.DTYPE = DTYPE

local function ints(t)
  if t == nil then return nil end
  if av.is_tensor(t) then
    local l = t:reshape(-1):long():tolist()
    return l
  end
  return t
end
O.ints = ints

local function scalar(t)
  if t == nil then return nil end
  if av.is_tensor(t) then return t:reshape(-1)[1] end
  return t
end

local function axis1(a, nd) if a < 0 then a = a + nd end return a + 1 end

local function is_int(t) local d = t:dtype() return d == "int64" or d == "int32" or d == "uint8" end

local function fail(node, msg) error(("onnx: node '%s' (%s): %s"):format(node.name or "?", node.op_type, msg), 0) end

-- symmetric pads as a pair, or nil
local function sym(p) if p[1] == p[3] and p[2] == p[4] then return {p[1], p[2]} end end

local function auto_pads(a, x, k, s, d)
  local ap = a.auto_pad or "NOTSET"
  if ap == "NOTSET" then return a.pads or {0, 0, 0, 0} end
  if ap == "VALID" then return {0, 0, 0, 0} end
  local out = {}
  for i = 1, 2 do
    local inp = x:size(2 + i)
    local o = -((-inp) // s[i])
    local total = math.max(0, (o - 1) * s[i] + (k[i] - 1) * d[i] + 1 - inp)
    local small = total // 2
    if ap == "SAME_UPPER" then out[i], out[i + 2] = small, total - small else out[i], out[i + 2] = total - small, small end
  end
  return out
end

O.Conv = function(_, i, a, node)
  local x, w, b = i[1], i[2], i[3]
  if w:dim() ~= 4 then fail(node, "only 2-d convolutions are supported") end
  local k = a.kernel_shape or {w:size(3), w:size(4)}
  local s, d = a.strides or {1, 1}, a.dilations or {1, 1}
  local p = auto_pads(a, x, k, s, d)
  local pad = sym(p)
  if not pad then x = F.pad(x, {p[2], p[4], p[1], p[3]}); pad = {0, 0} end
  return {F.conv2d(x, w, b, {stride = s, padding = pad, dilation = d, groups = a.group or 1})}
end

O.BatchNormalization = function(ctx, i, a)
  local training = ctx.training and (ctx.module == nil or ctx.bn_train ~= false)
  return {F.batch_norm(i[1], i[4], i[5], i[2], i[3], {training = training, momentum = 1 - (a.momentum or 0.9),
                                                      eps = a.epsilon or 1e-5})}
end

local function pool(kind)
  return function(_, i, a, node)
    local x = i[1]
    local k = a.kernel_shape
    if not k or #k ~= 2 then fail(node, "only 2-d pooling is supported") end
    local s, d = a.strides or {1, 1}, a.dilations or {1, 1}
    local p = auto_pads(a, x, k, s, d)
    local pad = sym(p)
    if not pad then
      if kind == "avg" and (a.count_include_pad or 0) == 0 then fail(node, "asymmetric pads without count_include_pad") end
      x = F.pad(x, {p[2], p[4], p[1], p[3]}, {value = kind == "max" and -math.huge or 0})
      pad = {0, 0}
    end
    local ceil = (a.ceil_mode or 0) == 1
    if kind == "max" then
      return {F.max_pool2d(x, k, {stride = s, padding = pad, dilation = d, ceil_mode = ceil})}
    end
    return {F.avg_pool2d(x, k, {stride = s, padding = pad, ceil_mode = ceil, count_include_pad = (a.count_include_pad or 0) == 1})}
  end
end
O.MaxPool = pool("max")
O.AveragePool = pool("avg")
O.GlobalAveragePool = function(_, i) return {F.adaptive_avg_pool2d(i[1], {1, 1})} end
O.GlobalMaxPool = function(_, i) return {F.adaptive_max_pool2d(i[1], {1, 1})} end

local function un(fn) return function(_, i) return {fn(i[1])} end end
O.Relu = un(F.relu)
O.Sigmoid = un(F.sigmoid)
O.Tanh = un(F.tanh)
O.Erf = un(av.erf)
O.Exp = un(av.exp)
O.Log = un(av.log)
O.Sqrt = un(av.sqrt)
O.Neg = un(av.neg)
O.Abs = un(av.abs)
O.Reciprocal = un(av.reciprocal)
O.Floor = un(av.floor)
O.Ceil = un(av.ceil)
O.Softplus = un(F.softplus)
O.HardSwish = un(F.hardswish)
O.Identity = function(_, i) return {i[1]} end
O.LeakyRelu = function(_, i, a) return {F.leaky_relu(i[1], {negative_slope = a.alpha or 0.01})} end
O.Elu = function(_, i, a) return {F.elu(i[1], {alpha = a.alpha or 1.0})} end
O.Gelu = function(_, i, a) return {F.gelu(i[1], {approximate = a.approximate or "none"})} end
O.HardSigmoid = function(_, i, a)
  local al, be = a.alpha or 0.2, a.beta or 0.5
  if math.abs(al - 1 / 6) < 1e-7 and be == 0.5 then return {F.hardsigmoid(i[1])} end
  return {av.clamp(i[1] * al + be, 0, 1)}
end
O.Clip = function(_, i, a)
  local lo, hi = scalar(i[2]), scalar(i[3])
  if lo == nil then lo = a.min end
  if hi == nil then hi = a.max end
  if lo == 0 and hi == 6 then return {F.relu6(i[1])} end
  if lo == 0 and hi == nil then return {F.relu(i[1])} end
  return {av.clamp(i[1], lo, hi)}
end

local function softmax(fn)
  return function(ctx, i, a)
    local x = i[1]
    local nd = x:dim()
    if ctx.opset >= 13 then return {fn(x, axis1(a.axis or -1, nd))} end
    local ax = axis1(a.axis or 1, nd) -- opset < 13: coerced to 2-d at axis
    if ax == nd then return {fn(x, nd)} end
    local s = x:size()
    local lead = 1
    for d = 1, ax - 1 do lead = lead * s[d] end
    return {fn(x:reshape(lead, -1), 2):reshape(s)}
  end
end
O.Softmax = softmax(F.softmax)
O.LogSoftmax = softmax(F.log_softmax)

local function binary(fn, intfn)
  return function(_, i)
    local x, y = i[1], i[2]
    if intfn and is_int(x) and is_int(y) then return {intfn(x, y)} end
    return {fn(x, y)}
  end
end
O.Add = binary(av.add)
O.Sub = binary(av.sub)
O.Mul = binary(av.mul)
O.Div = binary(av.div, function(x, y) return av.div(x:double(), y:double()):trunc():to(x:dtype()) end)
O.Pow = binary(av.pow)
O.Max = function(_, i)
  local r = i[1]
  for k = 2, #i do r = av.maximum(r, i[k]) end
  return {r}
end
O.Min = function(_, i)
  local r = i[1]
  for k = 2, #i do r = av.minimum(r, i[k]) end
  return {r}
end
O.Sum = function(_, i)
  local r = i[1]
  for k = 2, #i do r = r + i[k] end
  return {r}
end
O.MatMul = function(_, i) return {av.matmul(i[1], i[2])} end
O.Gemm = function(_, i, a)
  local A, B, C = i[1], i[2], i[3]
  local alpha, beta = a.alpha or 1, a.beta or 1
  local ta, tb = (a.transA or 0) == 1, (a.transB or 0) == 1
  if not ta and tb and alpha == 1 and (C == nil or beta == 1) and (C == nil or C:dim() <= 1) then
    return {F.linear(A, B, C)}
  end
  if ta then A = A:t() end
  if tb then B = B:t() end
  local y = av.matmul(A, B)
  if alpha ~= 1 then y = y * alpha end
  if C ~= nil then y = y + (beta ~= 1 and C * beta or C) end
  return {y}
end

O.Concat = function(_, i, a)
  local list = {}
  for k = 1, #i do if i[k] ~= nil then list[#list + 1] = i[k] end end
  local nd = list[1]:dim()
  return {av.cat(list, axis1(a.axis, nd))}
end

O.Flatten = function(_, i, a)
  local x = i[1]
  local ax = a.axis or 1
  if ax < 0 then ax = ax + x:dim() end
  local s = x:size()
  local lead, rest = 1, 1
  for d = 1, ax do lead = lead * s[d] end
  for d = ax + 1, #s do rest = rest * s[d] end
  return {x:reshape(lead, rest)}
end

O.Reshape = function(_, i, a)
  local x, shape = i[1], ints(i[2])
  local s = x:size()
  local out = {}
  for d, v in ipairs(shape) do
    if v == 0 and (a.allowzero or 0) == 0 then out[d] = s[d] else out[d] = v end
  end
  if #out == 0 then return {x:reshape(-1):reshape({})} end
  return {x:reshape(out)}
end

O.Transpose = function(_, i, a)
  local x = i[1]
  local perm = {}
  if a.perm then
    for d, v in ipairs(a.perm) do perm[d] = v + 1 end
  else
    for d = 1, x:dim() do perm[d] = x:dim() - d + 1 end
  end
  return {x:permute(perm)}
end

local function axes_of(ctx, i, a, since)
  if ctx.opset >= since then return ints(i[2]) end
  return a.axes
end

O.Unsqueeze = function(ctx, i, a)
  local x = i[1]
  local axes = axes_of(ctx, i, a, 13)
  local nd = x:dim() + #axes
  local norm = {}
  for k, v in ipairs(axes) do norm[k] = v < 0 and v + nd or v end
  table.sort(norm)
  for _, v in ipairs(norm) do x = x:unsqueeze(v + 1) end
  return {x}
end

O.Squeeze = function(ctx, i, a)
  local x = i[1]
  local axes = axes_of(ctx, i, a, 13)
  if axes == nil or #axes == 0 then
    local s = {}
    for _, v in ipairs(x:size()) do if v ~= 1 then s[#s + 1] = v end end
    return {x:reshape(s)}
  end
  local nd = x:dim()
  local norm = {}
  for k, v in ipairs(axes) do norm[k] = v < 0 and v + nd or v end
  table.sort(norm, function(p, q) return p > q end)
  for _, v in ipairs(norm) do x = x:squeeze(v + 1) end
  return {x}
end

O.Constant = function(_, _, a, node)
  if a.value ~= nil then return {a.value} end
  if a.value_float ~= nil then return {av.tensor(a.value_float, {dtype = "float32"})} end
  if a.value_floats ~= nil then return {av.tensor(a.value_floats, {dtype = "float32"})} end
  if a.value_int ~= nil then return {av.tensor(a.value_int, {dtype = "int64"})} end
  if a.value_ints ~= nil then return {av.tensor(a.value_ints, {dtype = "int64"})} end
  fail(node, "Constant without a value attribute aviary reads (value, value_float(s), value_int(s))")
end

O.ConstantOfShape = function(_, i, a)
  local shape = ints(i[1])
  local v = a.value
  local dt, val = "float32", 0
  if v ~= nil then dt, val = v:dtype(), v:reshape(-1)[1] end
  if #shape == 0 then return {av.tensor(val, {dtype = dt})} end
  return {av.full(shape, val, {dtype = dt})}
end

O.Expand = function(_, i)
  local x, shape = i[1], ints(i[2])
  -- numpy-style broadcast of x against shape
  local nd = math.max(x:dim(), #shape)
  local out = {}
  local xs = x:size()
  for d = 1, nd do
    local a = xs[d - (nd - x:dim())] or 1
    local b = shape[d - (nd - #shape)] or 1
    out[d] = a == 1 and b or a
  end
  while x:dim() < nd do x = x:unsqueeze(1) end
  return {x:expand(out)}
end

O.Shape = function(_, i, a)
  local s = i[1]:size()
  local nd = #s
  local st, en = a.start or 0, a["end"] or nd
  if st < 0 then st = st + nd end
  if en < 0 then en = en + nd end
  st, en = math.max(0, math.min(st, nd)), math.max(0, math.min(en, nd))
  local out = {}
  for d = st + 1, en do out[#out + 1] = s[d] end
  if #out == 0 then return {av.zeros(0, {dtype = "int64"})} end
  return {av.tensor(out, {dtype = "int64"})}
end

O.Gather = function(_, i, a)
  local x, idx = i[1], i[2]
  local ax = axis1(a.axis or 0, x:dim())
  local n = x:size(ax)
  if idx:dim() == 0 then
    local v = idx:item()
    if v < 0 then v = v + n end
    return {x:select(ax, v + 1)}
  end
  local flat = idx:reshape(-1):long()
  flat = av.where(flat:lt(0), flat + n, flat) + 1
  local r = x:index_select(ax, flat)
  local s, is = x:size(), idx:size()
  local shape = {}
  for d = 1, ax - 1 do shape[#shape + 1] = s[d] end
  for _, v in ipairs(is) do shape[#shape + 1] = v end
  for d = ax + 1, #s do shape[#shape + 1] = s[d] end
  return {r:reshape(shape)}
end

O.Slice = function(_, i, a, node)
  local x = i[1]
  local starts, ends = ints(i[2]), ints(i[3])
  local axes = ints(i[4])
  local steps = ints(i[5])
  if axes == nil then axes = {} for k = 1, #starts do axes[k] = k - 1 end end
  for k = 1, #starts do
    local ax = axis1(axes[k], x:dim())
    local n = x:size(ax)
    local step = steps and steps[k] or 1
    if step == 0 then fail(node, "a step of 0") end
    local st, en = starts[k], ends[k]
    if st < 0 then st = st + n end
    if en < 0 then en = en + n end
    if step > 0 then
      st = math.max(0, math.min(st, n))
      en = math.max(0, math.min(en, n))
    else
      st = math.max(-1, math.min(st, n - 1))
      en = math.max(-1, math.min(en, n - 1))
    end
    if step == 1 then
      if en < st then en = st end
      if st ~= 0 or en ~= n then x = x:narrow(ax, st + 1, en - st) end
    else
      local idx = {}
      local v = st
      while (step > 0 and v < en) or (step < 0 and v > en) do idx[#idx + 1] = v + 1; v = v + step end
      if #idx == 0 then
        local s = x:size(); s[ax] = 0
        x = av.zeros(s, {dtype = x:dtype()})
      else
        x = x:index_select(ax, av.tensor(idx, {dtype = "int64"}))
      end
    end
  end
  return {x}
end

O.Cast = function(_, i, a, node)
  local dt = DTYPE[a.to]
  if not dt then fail(node, "cannot cast to ONNX element type " .. tostring(a.to)) end
  if i[1]:dtype() == dt then return {i[1]} end
  return {i[1]:to(dt)}
end

local function reduce(method, since)
  return function(ctx, i, a)
    local x = i[1]
    local axes = ctx.opset >= since and ints(i[2]) or a.axes
    local keep = (a.keepdims or 1) == 1
    local dims = {}
    if axes == nil or #axes == 0 then
      if (a.noop_with_empty_axes or 0) == 1 then return {x} end
      for d = 1, x:dim() do dims[d] = d end
    else
      for k, v in ipairs(axes) do dims[k] = axis1(v, x:dim()) end
    end
    return {x[method](x, dims, keep)}
  end
end
O.ReduceMean = reduce("mean", 18)
O.ReduceSum = reduce("sum", 13)
O.ReduceMax = reduce("amax", 18)

O.Dropout = function(ctx, i, a)
  local ratio = scalar(i[2]) or a.ratio or 0.5
  if ctx.training and ratio > 0 then return {F.dropout(i[1], {p = ratio, training = true})} end
  return {i[1]}
end

O.Pad = function(ctx, i, a, node)
  local x = i[1]
  local nd = x:dim()
  local pads = ints(i[2]) or a.pads
  local value = scalar(i[3]) or a.value or 0
  local axes = ints(i[4])
  if axes == nil then axes = {} for d = 1, nd do axes[d] = d - 1 end end
  local n = #axes
  local begins, ends = {}, {}
  for d = 1, nd do begins[d], ends[d] = 0, 0 end
  for k, ax in ipairs(axes) do
    local d = axis1(ax, nd)
    begins[d], ends[d] = pads[k], pads[n + k]
  end
  local tp = {}
  local last = 0
  for d = 1, nd do if begins[d] ~= 0 or ends[d] ~= 0 then last = math.max(last, nd - d + 1) end end
  for k = 1, last do
    local d = nd - k + 1
    tp[#tp + 1], tp[#tp + 2] = begins[d], ends[d]
  end
  if #tp == 0 then return {x} end
  local mode = a.mode or "constant"
  local m = ({constant = "constant", reflect = "reflect", edge = "replicate"})[mode]
  if not m then fail(node, "pad mode '" .. mode .. "' is not supported") end
  return {F.pad(x, tp, {mode = m, value = value})}
end

O.Resize = function(ctx, i, a, node)
  local x = i[1]
  local scales, sizes = i[3], i[4]
  local mode = a.mode or "nearest"
  local ctm = a.coordinate_transformation_mode or "half_pixel"
  local opts = {}
  if mode == "nearest" then
    if ctm ~= "asymmetric" or (a.nearest_mode or "round_prefer_floor") ~= "floor" then
      fail(node, ("nearest mode needs coordinate_transformation_mode 'asymmetric' and nearest_mode 'floor' "
        .. "(PyTorch's), got '%s' and '%s'"):format(ctm, tostring(a.nearest_mode or "round_prefer_floor")))
    end
    opts.mode = "nearest"
  elseif mode == "linear" then
    opts.mode = "bilinear"
    if ctm == "align_corners" then opts.align_corners = true
    elseif ctm == "half_pixel" or ctm == "pytorch_half_pixel" then opts.align_corners = false
    else fail(node, "linear mode with coordinate_transformation_mode '" .. ctm .. "' is not supported") end
  else
    fail(node, "mode '" .. mode .. "' is not supported (nearest, linear)")
  end
  if x:dim() ~= 4 then fail(node, "only 4-d inputs are supported") end
  if sizes ~= nil and sizes:numel() > 0 then
    local s = ints(sizes)
    opts.size = {s[#s - 1], s[#s]}
  elseif scales ~= nil and scales:numel() > 0 then
    local s = scales:double():tolist()
    if s[1] ~= 1 or s[2] ~= 1 then fail(node, "scaling the batch or channel dims is not supported") end
    opts.scale_factor = {s[3], s[4]}
  else
    fail(node, "neither scales nor sizes given")
  end
  return {F.interpolate(x, opts)}
end

return O
