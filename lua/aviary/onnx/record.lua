--- aviary.onnx.record: how the ONNX exporter records each traced call.
-- H[name](g, result, args...) emits the ONNX nodes for one call of the
-- aviary function or method `name` (the same arguments the call got) into
-- graph g (aviary.onnx.export's Graph: g:emit, g:name, g:const, g:operand)
-- and maps the result tensor to the new value name. Dims are converted from
-- aviary's 1-based convention to ONNX's 0-based axes here.
local av = require "aviary"
local core = require "aviary.core"

local R = {}

local ELEM = {float32 = 1, uint8 = 2, int8 = 3, int32 = 6, int64 = 7, float64 = 11, float16 = 10, bfloat16 = 16}
R.ELEM = ELEM

local is_tensor = core.is_tensor

-- attribute constructors
local function A_i(name, v) return {name = name, type = "INT", i = math.tointeger(v) or v} end
local function A_f(name, v) return {name = name, type = "FLOAT", f = v} end
local function A_s(name, v) return {name = name, type = "STRING", s = v} end
local function A_ints(name, v)
  local out = {}
  for i, x in ipairs(v) do out[i] = math.tointeger(x) or x end
  return {name = name, type = "INTS", ints = out}
end
R.A_i, R.A_f, R.A_s, R.A_ints = A_i, A_f, A_s, A_ints

local function pair(v, default)
  if v == nil then v = default end
  if type(v) == "number" then return {v, v} end
  return {v[1], v[2] or v[1]}
end

--------------------------------------------------------------------------------
-- recording handlers: h(g, result, args...) emits nodes and maps the result

local H = {}

local function map(g, t, name) g.names[t] = name; return name end

local function unary(op, attrs_fn)
  return function(g, r, x, ...)
    return map(g, r, g:emit(op, {g:name(x)}, attrs_fn and attrs_fn(...) or nil))
  end
end

local function conv_pads(w, padding, dilation)
  if padding == "valid" then return {0, 0, 0, 0} end
  local kh, kw = w:size(3), w:size(4)
  if padding == "same" then
    local th, tw = dilation[1] * (kh - 1), dilation[2] * (kw - 1)
    return {th // 2, tw // 2, th - th // 2, tw - tw // 2}
  end
  local p = pair(padding, 0)
  return {p[1], p[2], p[1], p[2]}
end

H.conv2d = function(g, r, x, w, b, o)
  if type(b) == "table" and not is_tensor(b) then o, b = b, nil end
  o = o or {}
  if x:dim() ~= 4 then error("onnx.export: conv2d on an unbatched (3-d) input is not supported", 0) end
  local stride, dilation = pair(o.stride, 1), pair(o.dilation, 1)
  local ins = {g:name(x), g:name(w)}
  if b then ins[3] = g:name(b) end
  local attrs = {A_ints("dilations", dilation), A_i("group", o.groups or 1),
                 A_ints("kernel_shape", {w:size(3), w:size(4)}), A_ints("pads", conv_pads(w, o.padding, dilation)),
                 A_ints("strides", stride)}
  return map(g, r, g:emit("Conv", ins, attrs))
end

H.batch_norm = function(g, r, x, rm, rv, w, b, o)
  o = o or {}
  if o.training then error("onnx.export: batch_norm in training mode cannot be exported (call model:evaluate())", 0) end
  if not rm or not rv then error("onnx.export: batch_norm without running statistics cannot be exported", 0) end
  local c = x:size(2)
  local wn = w and g:name(w) or g:const(av.ones(c))
  local bn = b and g:name(b) or g:const(av.zeros(c))
  return map(g, r, g:emit("BatchNormalization", {g:name(x), wn, bn, g:name(rm), g:name(rv)},
    {A_f("epsilon", o.eps or 1e-5), A_f("momentum", 1 - (o.momentum or 0.1))}))
end

H.relu = unary("Relu")
H.relu_ = H.relu
H.sigmoid = unary("Sigmoid")
H.sigmoid_ = H.sigmoid
H.tanh = unary("Tanh")
H.tanh_ = H.tanh
H.erf = unary("Erf")
H.exp = unary("Exp")
H.log = unary("Log")
H.sqrt = unary("Sqrt")
H.neg = unary("Neg")
H.abs = unary("Abs")
H.reciprocal = unary("Reciprocal")
H.floor = unary("Floor")
H.ceil = unary("Ceil")
H.leaky_relu = unary("LeakyRelu", function(o) return {A_f("alpha", (o and o.negative_slope) or 0.01)} end)
H.elu = unary("Elu", function(o) return {A_f("alpha", (o and o.alpha) or 1.0)} end)
H.hardsigmoid = unary("HardSigmoid", function() return {A_f("alpha", 1 / 6), A_f("beta", 0.5)} end)
H.log_softmax = function(g, r, x, dim)
  return map(g, r, g:emit("LogSoftmax", {g:name(x)}, {A_i("axis", dim > 0 and dim - 1 or dim)}))
end
H.softmax = function(g, r, x, dim)
  return map(g, r, g:emit("Softmax", {g:name(x)}, {A_i("axis", dim > 0 and dim - 1 or dim)}))
end

local function clip(g, x, lo, hi, like)
  local ins = {g:name(x), lo ~= nil and g:operand(lo, like) or "", hi ~= nil and g:operand(hi, like) or ""}
  while ins[#ins] == "" do ins[#ins] = nil end
  return g:emit("Clip", ins)
end
H.relu6 = function(g, r, x) return map(g, r, clip(g, x, 0, 6, x)) end
H.clamp = function(g, r, x, lo, hi)
  if type(lo) == "table" and not is_tensor(lo) then lo, hi = lo.min, lo.max end
  return map(g, r, clip(g, x, lo, hi, x))
end
H.clamp_, H.clip = H.clamp, H.clamp

H.hardswish = function(g, r, x)
  if g.opset >= 14 then return map(g, r, g:emit("HardSwish", {g:name(x)})) end
  local hs = g:emit("HardSigmoid", {g:name(x)}, {A_f("alpha", 1 / 6), A_f("beta", 0.5)})
  return map(g, r, g:emit("Mul", {g:name(x), hs}))
end
H.silu = function(g, r, x) return map(g, r, g:emit("Mul", {g:name(x), g:emit("Sigmoid", {g:name(x)})})) end
H.softplus = function(g, r, x, o)
  local beta = (o and o.beta) or 1
  if beta == 1 then return map(g, r, g:emit("Softplus", {g:name(x)})) end
  local bx = g:emit("Mul", {g:name(x), g:operand(beta, x)})
  return map(g, r, g:emit("Div", {g:emit("Softplus", {bx}), g:operand(beta, x)}))
end
H.gelu = function(g, r, x, o)
  local approx = type(o) == "string" and o or (type(o) == "table" and o.approximate) or "none"
  if g.opset >= 20 then return map(g, r, g:emit("Gelu", {g:name(x)}, {A_s("approximate", approx)})) end
  local xn = g:name(x)
  local inner
  if approx == "tanh" then
    local x3 = g:emit("Mul", {xn, g:emit("Mul", {xn, xn})})
    local s = g:emit("Add", {xn, g:emit("Mul", {x3, g:operand(0.044715, x)})})
    inner = g:emit("Tanh", {g:emit("Mul", {s, g:operand(math.sqrt(2 / math.pi), x)})})
  else
    inner = g:emit("Erf", {g:emit("Div", {xn, g:operand(math.sqrt(2), x)})})
  end
  local half = g:emit("Mul", {xn, g:operand(0.5, x)})
  return map(g, r, g:emit("Mul", {half, g:emit("Add", {inner, g:operand(1, x)})}))
end

local function pool_attrs(k, o, with_dilation)
  local kk = pair(k)
  local stride = pair(o.stride, kk)
  local p = pair(o.padding, 0)
  local attrs = {A_i("ceil_mode", o.ceil_mode and 1 or 0), A_ints("kernel_shape", kk),
                 A_ints("pads", {p[1], p[2], p[1], p[2]}), A_ints("strides", stride)}
  if with_dilation then
    local d = pair(o.dilation, 1)
    if d[1] ~= 1 or d[2] ~= 1 then attrs[#attrs + 1] = A_ints("dilations", d) end
  end
  return attrs
end

H.max_pool2d = function(g, r, x, k, o)
  o = o or {}
  if o.return_indices then error("onnx.export: max_pool2d with return_indices is not supported", 0) end
  return map(g, r, g:emit("MaxPool", {g:name(x)}, pool_attrs(k, o, true)))
end
H.avg_pool2d = function(g, r, x, k, o)
  o = o or {}
  if o.divisor_override then error("onnx.export: avg_pool2d with divisor_override is not supported", 0) end
  local attrs = pool_attrs(k, o, false)
  attrs[#attrs + 1] = A_i("count_include_pad", o.count_include_pad == false and 0 or 1)
  return map(g, r, g:emit("AveragePool", {g:name(x)}, attrs))
end

-- the sizes input of Resize for spatial size {h, w} with a dynamic batch:
-- Concat(Shape(x)[0:2], {h, w})
local function resize_sizes(g, xn, h, w)
  local sh = g:emit("Shape", {xn})
  local nc = g:emit("Slice", {sh, g:const({0}, "int64"), g:const({2}, "int64"), g:const({0}, "int64")})
  return g:emit("Concat", {nc, g:const({h, w}, "int64")}, {A_i("axis", 0)})
end

local function adaptive(kind)
  return function(g, r, x, size, o)
    if o and o.return_indices then error("onnx.export: adaptive_max_pool2d with return_indices is not supported", 0) end
    local s = pair(size)
    local H_, W_ = x:size(x:dim() - 1), x:size(x:dim())
    local oh, ow = s[1] or H_, s[2] or W_
    local xn = g:name(x)
    if oh == 1 and ow == 1 then
      return map(g, r, g:emit(kind == "avg" and "GlobalAveragePool" or "GlobalMaxPool", {xn}))
    end
    if oh == H_ and ow == W_ then return map(g, r, xn) end
    if H_ % oh == 0 and W_ % ow == 0 then
      local kh, kw = H_ // oh, W_ // ow
      return map(g, r, g:emit(kind == "avg" and "AveragePool" or "MaxPool", {xn},
        {A_ints("kernel_shape", {kh, kw}), A_ints("strides", {kh, kw})}))
    end
    if oh % H_ == 0 and ow % W_ == 0 then
      -- every output bin covers exactly one input pixel: nearest upsampling
      return map(g, r, g:emit("Resize", {xn, "", "", resize_sizes(g, xn, oh, ow)},
        {A_s("coordinate_transformation_mode", "asymmetric"), A_s("mode", "nearest"), A_s("nearest_mode", "floor")}))
    end
    -- general bins: one Slice + Reduce per bin (PyTorch's start/end rule)
    local red = kind == "avg" and "ReduceMean" or "ReduceMax"
    local rows = {}
    for i = 0, oh - 1 do
      local h0, h1 = (i * H_) // oh, -((-(i + 1) * H_) // oh)
      local cols = {}
      for j = 0, ow - 1 do
        local w0, w1 = (j * W_) // ow, -((-(j + 1) * W_) // ow)
        local sl = g:emit("Slice", {xn, g:const({h0, w0}, "int64"), g:const({h1, w1}, "int64"), g:const({2, 3}, "int64")})
        local rd
        if (red == "ReduceMean" and g.opset >= 18) or (red == "ReduceMax" and g.opset >= 18) then
          rd = g:emit(red, {sl, g:const({2, 3}, "int64")}, {A_i("keepdims", 1)})
        else
          rd = g:emit(red, {sl}, {A_ints("axes", {2, 3}), A_i("keepdims", 1)})
        end
        cols[#cols + 1] = rd
      end
      rows[#rows + 1] = #cols == 1 and cols[1] or g:emit("Concat", cols, {A_i("axis", 3)})
    end
    return map(g, r, #rows == 1 and rows[1] or g:emit("Concat", rows, {A_i("axis", 2)}))
  end
end
H.adaptive_avg_pool2d = adaptive("avg")
H.adaptive_max_pool2d = adaptive("max")

H.linear = function(g, r, x, w, b)
  if x:dim() == 2 then
    local ins = {g:name(x), g:name(w)}
    if b then ins[3] = g:name(b) end
    return map(g, r, g:emit("Gemm", ins, {A_f("alpha", 1), A_f("beta", 1), A_i("transB", 1)}))
  end
  local wt = g:emit("Transpose", {g:name(w)}, {A_ints("perm", {1, 0})})
  local y = g:emit("MatMul", {g:name(x), wt})
  if b then y = g:emit("Add", {y, g:name(b)}) end
  return map(g, r, y)
end

H.dropout = function(g, r, x, p, o)
  if type(p) == "table" then o = p end
  if r ~= x and not (o and o.training == false) then
    error("onnx.export: dropout in training mode cannot be exported (call model:evaluate())", 0)
  end
  return map(g, r, g:name(x))
end

H.interpolate = function(g, r, x, size, o)
  if type(size) == "table" and #size == 0 and not is_tensor(size) then o, size = size, nil end
  o = o or {}
  size = size or o.size
  local mode = o.mode or "nearest"
  local attrs
  if mode == "nearest" then
    attrs = {A_s("coordinate_transformation_mode", "asymmetric"), A_s("mode", "nearest"), A_s("nearest_mode", "floor")}
  elseif mode == "bilinear" then
    attrs = {A_s("coordinate_transformation_mode", o.align_corners and "align_corners" or "pytorch_half_pixel"),
             A_s("mode", "linear")}
  else
    error(("onnx.export: interpolate mode '%s' is not supported (nearest, bilinear)"):format(mode), 0)
  end
  local xn = g:name(x)
  if size or o.recompute_scale_factor then
    local oh, ow = r:size(3), r:size(4)
    return map(g, r, g:emit("Resize", {xn, "", "", resize_sizes(g, xn, oh, ow)}, attrs))
  end
  local s = pair(o.scale_factor)
  return map(g, r, g:emit("Resize", {xn, "", g:const({1, 1, s[1], s[2]}, "float32")}, attrs))
end

H.pad = function(g, r, x, p, mode, value)
  if type(mode) == "table" then mode, value = mode.mode, mode.value end
  mode = mode or "constant"
  local nd = x:dim()
  local begins, ends = {}, {}
  for d = 1, nd do begins[d], ends[d] = 0, 0 end
  for i = 1, #p // 2 do
    local d = nd - i + 1
    begins[d], ends[d] = p[2 * i - 1], p[2 * i]
  end
  local pads = {}
  for d = 1, nd do pads[d], pads[nd + d] = begins[d], ends[d] end
  local onnx_mode = ({constant = "constant", reflect = "reflect", replicate = "edge"})[mode]
  if not onnx_mode then error(("onnx.export: pad mode '%s' is not supported"):format(tostring(mode)), 0) end
  local ins = {g:name(x), g:const(pads, "int64")}
  if onnx_mode == "constant" and value and value ~= 0 then ins[3] = g:operand(value, x) end
  return map(g, r, g:emit("Pad", ins, {A_s("mode", onnx_mode)}))
end

-- elementwise binary ops, functions, methods, in-place methods and metamethods
local function binary(op)
  return function(g, r, a, b, o)
    local like = is_tensor(a) and a or b
    local an, bn = g:operand(a, like), g:operand(b, like)
    if type(o) == "table" and o.alpha and o.alpha ~= 1 then
      bn = g:emit("Mul", {bn, g:operand(o.alpha, like)})
    end
    return map(g, r, g:emit(op, {an, bn}))
  end
end
H.add, H.sub, H.mul, H.div, H.pow = binary("Add"), binary("Sub"), binary("Mul"), binary("Div"), binary("Pow")
H.maximum, H.minimum = binary("Max"), binary("Min")
H.add_, H.sub_, H.mul_, H.div_, H.pow_ = H.add, H.sub, H.mul, H.div, H.pow
H.__add, H.__sub, H.__mul, H.__div, H.__pow = H.add, H.sub, H.mul, H.div, H.pow
H.__unm = unary("Neg")
H.matmul = function(g, r, a, b) return map(g, r, g:emit("MatMul", {g:name(a), g:name(b)})) end
H.mm = H.matmul

H.cat = function(g, r, list, dim)
  dim = dim or 1
  local ins = {}
  for i, t in ipairs(list) do ins[i] = g:name(t) end
  return map(g, r, g:emit("Concat", ins, {A_i("axis", dim > 0 and dim - 1 or dim)}))
end

-- the shape input of Reshape: 0 keeps the (dynamic) batch size when the
-- leading dim is unchanged; the caller's -1 stays where it was
local function reshape_to(g, r, x, requested)
  local out, inp = r:size(), x:size()
  local shape = {}
  local minus = nil
  for i, v in ipairs(requested or {}) do if v == -1 then minus = i end end
  for i = 1, #out do shape[i] = out[i] end
  if minus then shape[minus] = -1 end
  if #out >= 1 and #inp >= 1 and out[1] == inp[1] and minus ~= 1 then shape[1] = 0 end
  return map(g, r, g:emit("Reshape", {g:name(x), g:const(shape, "int64")}))
end
local function sizes_arg(...)
  local a = ...
  if type(a) == "table" then return a end
  local s = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "number" then s[#s + 1] = v end
  end
  return s
end
H.view = function(g, r, x, ...) return reshape_to(g, r, x, sizes_arg(...)) end
H.reshape = H.view
H.view_as = function(g, r, x) return reshape_to(g, r, x, nil) end
H.flatten = function(g, r, x, s, e)
  s, e = s or 1, e or -1
  local nd = x:dim()
  if s < 0 then s = nd + s + 1 end
  if e < 0 then e = nd + e + 1 end
  if s == 2 and e == nd and nd >= 2 then return map(g, r, g:emit("Flatten", {g:name(x)}, {A_i("axis", 1)})) end
  if s == e then return map(g, r, g:name(x)) end
  local shape = {}
  for i = 1, s - 1 do shape[i] = 0 end
  shape[#shape + 1] = -1
  for i = e + 1, nd do shape[#shape + 1] = x:size(i) end
  return map(g, r, g:emit("Reshape", {g:name(x), g:const(shape, "int64")}))
end

local function axis0(d, nd) if d < 0 then d = nd + d + 1 end return d - 1 end
H.narrow = function(g, r, x, dim, start, len)
  local d = axis0(dim, x:dim())
  return map(g, r, g:emit("Slice", {g:name(x), g:const({start - 1}, "int64"), g:const({start - 1 + len}, "int64"),
                                     g:const({d}, "int64")}))
end
H.select = function(g, r, x, dim, i)
  local d = axis0(dim, x:dim())
  if i < 0 then i = x:size(d + 1) + i + 1 end
  return map(g, r, g:emit("Gather", {g:name(x), g:const(av.tensor(i - 1, {dtype = "int64"}))}, {A_i("axis", d)}))
end
H.permute = function(g, r, x, ...)
  local p = sizes_arg(...)
  local perm = {}
  for i, v in ipairs(p) do perm[i] = axis0(v, x:dim()) end
  return map(g, r, g:emit("Transpose", {g:name(x)}, {A_ints("perm", perm)}))
end
H.transpose = function(g, r, x, a, b)
  local perm = {}
  for i = 1, x:dim() do perm[i] = i - 1 end
  a, b = axis0(a, x:dim()) + 1, axis0(b, x:dim()) + 1
  perm[a], perm[b] = perm[b], perm[a]
  return map(g, r, g:emit("Transpose", {g:name(x)}, {A_ints("perm", perm)}))
end
H.t = function(g, r, x)
  if x:dim() < 2 then return map(g, r, g:name(x)) end
  return map(g, r, g:emit("Transpose", {g:name(x)}, {A_ints("perm", {1, 0})}))
end
H.unsqueeze = function(g, r, x, d)
  return map(g, r, g:emit("Unsqueeze", {g:name(x), g:const({axis0(d, x:dim() + 1)}, "int64")}))
end
H.squeeze = function(g, r, x, d)
  if d == nil then return map(g, r, g:emit("Squeeze", {g:name(x)})) end
  return map(g, r, g:emit("Squeeze", {g:name(x), g:const({axis0(d, x:dim())}, "int64")}))
end
local function identity(g, r, x) return map(g, r, g:name(x)) end
H.contiguous, H.clone, H.detach = identity, identity, identity
local function cast_to(dt)
  return function(g, r, x)
    if x:dtype() == dt then return identity(g, r, x) end
    return map(g, r, g:emit("Cast", {g:name(x)}, {A_i("to", ELEM[dt])}))
  end
end
H.float, H.double, H.long, H.int = cast_to("float32"), cast_to("float64"), cast_to("int64"), cast_to("int32")
H.to = function(g, r, x)
  if r:dtype() == x:dtype() then return identity(g, r, x) end
  return cast_to(r:dtype())(g, r, x)
end

local function reduce(op)
  return function(g, r, x, dims, keep)
    if type(keep) == "table" then keep = keep.keepdim end
    if type(dims) == "table" and not is_tensor(dims) and dims.keepdim ~= nil and #dims == 0 then keep, dims = dims.keepdim, nil end
    local axes = {}
    if dims == nil then
      for i = 1, x:dim() do axes[i] = i - 1 end
    elseif type(dims) == "number" then
      axes = {axis0(dims, x:dim())}
    else
      for i, d in ipairs(dims) do axes[i] = axis0(d, x:dim()) end
    end
    local k = A_i("keepdims", keep and 1 or 0)
    if op == "ReduceSum" or g.opset >= 18 then
      return map(g, r, g:emit(op, {g:name(x), g:const(axes, "int64")}, {k}))
    end
    return map(g, r, g:emit(op, {g:name(x)}, {A_ints("axes", axes), k}))
  end
end
H.mean, H.sum = reduce("ReduceMean"), reduce("ReduceSum")


R.H = H
R.pair = pair
return R
