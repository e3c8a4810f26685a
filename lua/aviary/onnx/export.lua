--- aviary.onnx.export: ONNX export by tracing (torch.jit.trace style).
-- The model runs once, in evaluation mode under av.no_grad, while the tensor
-- functions it can call (aviary.nn.functional, the core av.* functions, the
-- Tensor methods and the arithmetic metamethods) are wrapped to record each
-- call as ONNX nodes. Values are named through a weak-keyed map from tensor
-- userdata to ONNX value names; parameters and buffers map to initializers
-- named as in state_dict. In-place ops (relu_, add_, clamp_, ...), which the
-- models use in evaluation, are recorded as their out-of-place ONNX op and the
-- tensor is re-mapped to the new value. Every wrapper is removed afterwards,
-- even when the forward pass fails.
local av = require "aviary"
local core = require "aviary.core"
local F = require "aviary.nn.functional"
local json = require "aviary.json"

local R = require "aviary.onnx.record"

local M = {}

local ELEM = R.ELEM
M.ELEM_OF_DTYPE = ELEM
local A_i = R.A_i
local H = R.H

local is_tensor = core.is_tensor

--------------------------------------------------------------------------------
-- the graph being built

local Graph = {}
Graph.__index = Graph

local function new_graph(opset)
  return setmetatable({opset = opset, node = {}, initializer = {}, init_by_name = {}, counter = {}, consts = 0,
                       names = setmetatable({}, {__mode = "k"}), params = setmetatable({}, {__mode = "k"}), poison = setmetatable({}, {__mode = "k"}),
                       used_names = {}}, Graph)
end

function Graph:fresh(op)
  local n = (self.counter[op] or 0) + 1
  self.counter[op] = n
  return ("/%s_%d"):format(op, n)
end

--- g:add_init(name, tensor) -> name (a new initializer)
function Graph:add_init(name, t)
  if self.init_by_name[name] then return name end
  local e = {name = name, tensor = t:detach():contiguous()}
  self.initializer[#self.initializer + 1] = e
  self.init_by_name[name] = e
  return name
end

--- g:const(values | tensor, dtype) -> the name of a new constant initializer
function Graph:const(v, dtype)
  local t = is_tensor(v) and v or av.tensor(v, {dtype = dtype or "float32"})
  self.consts = self.consts + 1
  return self:add_init(("onnx_const_%d"):format(self.consts), t)
end

function Graph:emit(op, inputs, attrs, nout, domain)
  local base = self:fresh(op)
  local outs = {}
  for i = 1, nout or 1 do outs[i] = base .. "_output_" .. (i - 1) end
  self.node[#self.node + 1] = {op_type = op, name = base, domain = domain or "", input = inputs, output = outs,
                               attribute = attrs or {}}
  return table.unpack(outs)
end

--- the ONNX name of tensor t; an unknown tensor becomes a constant initializer
function Graph:name(t)
  local p = self.poison[t]
  if p then
    error(("onnx.export: the model uses '%s', which cannot be expressed in ONNX by aviary's exporter "
      .. "(onnx.supported_ops().export lists what can)"):format(p), 0)
  end
  local n = self.names[t]
  if n then return n end
  n = self.params[t]
  if n then
    self:add_init(n, t)
    self.names[t] = n
    return n
  end
  local b = self.batch
  if b and t:dim() >= 2 and t:dim() == self.input_dim and t:size(1) == b then
    error(("onnx.export: a %s tensor reached the graph without being traced: it was made by a function the "
      .. "exporter does not see (a function captured before tracing, or an op aviary cannot export)")
      :format(table.concat(t:size(), "x")), 0)
  end
  n = self:const(t)
  self.names[t] = n
  return n
end

-- a tensor or a number (as a scalar of like's dtype)
function Graph:operand(v, like)
  if is_tensor(v) then return self:name(v) end
  local dt = like and like:dtype() or "float32"
  return self:const(av.tensor(v, {dtype = dt}))
end

--------------------------------------------------------------------------------
-- the wrappers

-- functions that never produce traced values (queries, autograd plumbing)
local NEUTRAL = {requires_grad_ = true, retain_grad = true, register_hook = true, backward = true, size = true,
                 dim = true, numel = true, item = true, tolist = true, stride = true, dtype = true, type = true,
                 is_contiguous = true, storage_offset = true, device = true, nDimension = true, ndimension = true,
                 nelement = true, isTensor = true, is_tensor = true, is_grad_enabled = true, set_grad_enabled = true,
                 manual_seed = true, set_num_threads = true, get_num_threads = true, clock = true,
                 get_rng_state = true, set_rng_state = true, conv2d_algorithm = true, save = true, load = true,
                 uniform_ = true, normal_ = true, fill_ = true, zero_ = true, copy_ = true}

--- M.trace(model, example_input, opts) -> graph (g), output tensor
function M.trace(model, x, opset)
  local g = new_graph(opset)
  local active = true
  local depth = 0
  local pack, unpack = table.pack, table.unpack

  local function any_traced(n, args)
    for i = 1, n do
      local a = args[i]
      if is_tensor(a) and (g.names[a] or g.poison[a]) then return true end
      if type(a) == "table" and not is_tensor(a) then
        for _, v in ipairs(a) do if is_tensor(v) and (g.names[v] or g.poison[v]) then return true end end
      end
    end
    return false
  end

  local function wrap(name, orig)
    local h = H[name]
    return function(...)
      if not active or depth > 0 then return orig(...) end
      depth = depth + 1
      local res = pack(pcall(orig, ...))
      if not res[1] then depth = depth - 1; error(res[2], 0) end
      local r = res[2]
      local ok, err = true, nil
      if is_tensor(r) then
        local args = pack(...)
        if h then
          if any_traced(args.n, args) then ok, err = pcall(h, g, r, ...) end
        elseif not NEUTRAL[name] and any_traced(args.n, args) then
          g.poison[r] = name
          if g.names[r] then g.names[r] = nil end
        end
      end
      depth = depth - 1
      if not ok then error(err, 0) end
      return unpack(res, 2, res.n)
    end
  end

  -- what to wrap: the core functions in av and F, the methods, the metamethods
  local saved = {}
  local function patch(tbl, key, val)
    saved[#saved + 1] = {tbl, key, rawget(tbl, key)}
    rawset(tbl, key, val)
  end
  local wrappers = {}
  local function wrapper_for(name, fn)
    local k = name .. "\0" .. tostring(fn)
    if not wrappers[k] then wrappers[k] = wrap(name, fn) end
    return wrappers[k]
  end
  for k, fn in pairs(core) do
    if type(fn) == "function" and rawget(av, k) == fn then patch(av, k, wrapper_for(k, fn)) end
  end
  for k, fn in pairs(core.Tensor) do
    if type(fn) == "function" then patch(core.Tensor, k, wrapper_for(k, fn)) end
  end
  for k, fn in pairs(F) do
    if type(fn) == "function" then patch(F, k, wrapper_for(k, fn)) end
  end
  local mt = core._metatable
  for _, k in ipairs({"__add", "__sub", "__mul", "__div", "__pow", "__unm"}) do
    local fn = rawget(mt, k)
    if fn then patch(mt, k, wrapper_for(k, fn)) end
  end
  -- layers that call a function captured when aviary.nn loaded: route them
  -- through F so the wrapped entries see the call
  local nn = require "aviary.nn"
  local via_F = {
    AdaptiveAvgPool2d = function(self, t) return F.adaptive_avg_pool2d(t, self.output_size) end,
    AdaptiveMaxPool2d = function(self, t) return F.adaptive_max_pool2d(t, self.output_size) end,
    Softmax = function(self, t) return F.softmax(t, self.dim) end,
    LogSoftmax = function(self, t) return F.log_softmax(t, self.dim) end,
    Sigmoid = function(_, t) return F.sigmoid(t) end,
    Tanh = function(_, t) return F.tanh(t) end,
    SiLU = function(_, t) return F.silu(t) end,
    Hardswish = function(_, t) return F.hardswish(t) end,
    Hardsigmoid = function(_, t) return F.hardsigmoid(t) end,
  }
  for cname, fwd in pairs(via_F) do
    local cls = rawget(nn, cname)
    if type(cls) == "table" and rawget(cls, "forward") then patch(cls, "forward", fwd) end
  end
  local function restore()
    for i = #saved, 1, -1 do
      local s = saved[i]
      rawset(s[1], s[2], s[3])
    end
    active = false
  end

  local was_training = model.training
  model:evaluate()
  for name, p in model:named_parameters() do g.params[p] = name end
  for name, b in model:named_buffers() do g.params[b] = name end
  g.names[x] = "input"
  g.batch, g.input_dim = x:size(1), x:dim()
  local ok, out = pcall(function()
    local _ <close> = av.no_grad()
    return model(x)
  end)
  restore()
  if was_training then model:train(true) end
  if not ok then error(out, 0) end
  if not is_tensor(out) then error("onnx.export: the model's forward must return one tensor", 0) end
  return g, out
end

--------------------------------------------------------------------------------
-- post passes

-- the consumers of every value
local function uses(g)
  local u = {}
  for _, n in ipairs(g.node) do
    for _, i in ipairs(n.input) do if i ~= "" then u[i] = (u[i] or 0) + 1 end end
  end
  return u
end

local function attr(n, name)
  for _, a in ipairs(n.attribute) do if a.name == name then return a end end
end

--- fold BatchNormalization into the Conv that feeds it (when nothing else reads the Conv)
local function fold_batchnorm(g, outputs)
  local u = uses(g)
  local producer = {}
  for i, n in ipairs(g.node) do for _, o in ipairs(n.output) do producer[o] = i end end
  local drop = {}
  local is_out = {}
  for _, o in ipairs(outputs) do is_out[o] = true end
  local rename = {}
  for _, n in ipairs(g.node) do
    if n.op_type == "BatchNormalization" then
      local pi = producer[n.input[1]]
      local conv = pi and g.node[pi]
      local all_init = true
      for k = 2, 5 do if not g.init_by_name[n.input[k]] then all_init = false end end
      if conv and conv.op_type == "Conv" and u[n.input[1]] == 1 and not is_out[n.input[1]] and all_init
        and g.init_by_name[conv.input[2]] and (not conv.input[3] or g.init_by_name[conv.input[3]]) then
        local function T(name) return g.init_by_name[name].tensor:double() end
        local scale, beta, mean, var = T(n.input[2]), T(n.input[3]), T(n.input[4]), T(n.input[5])
        local eps = attr(n, "epsilon") and attr(n, "epsilon").f or 1e-5
        local s = scale / (var + eps):sqrt()
        local w = T(conv.input[2])
        local cout = w:size(1)
        local w2 = (w * s:view(cout, 1, 1, 1)):float()
        local b0 = conv.input[3] and T(conv.input[3]) or av.zeros(cout, {dtype = "float64"})
        local b2 = ((b0 - mean) * s + beta):float()
        -- the folded tensors keep the convolution's names when nothing else reads them
        local function put(name, t, fallback)
          if name and u[name] == 1 then g.init_by_name[name].tensor = t; return name end
          local cand = fallback
          while g.init_by_name[cand] do cand = cand .. "_bnfold" end
          g:add_init(cand, t)
          return cand
        end
        local wname = put(conv.input[2], w2, conv.input[2] .. "_bnfold")
        local bname = put(conv.input[3], b2, (conv.input[2]:gsub("weight$", "bias")))
        conv.input = {conv.input[1], wname, bname}
        rename[n.output[1]] = conv.output[1]
        drop[n] = true
      end
    end
  end
  local kept = {}
  for _, n in ipairs(g.node) do
    if not drop[n] then
      for i, v in ipairs(n.input) do if rename[v] then n.input[i] = rename[v] end end
      kept[#kept + 1] = n
    end
  end
  g.node = kept
  return rename
end

-- drop initializers nothing reads
local function prune(g)
  local u = uses(g)
  local kept = {}
  for _, e in ipairs(g.initializer) do if u[e.name] then kept[#kept + 1] = e end end
  g.initializer = kept
end

--------------------------------------------------------------------------------
-- export

local function shape_with_batch(t, dynamic)
  local s = t:size()
  local out = {}
  for i, v in ipairs(s) do out[i] = v end
  if dynamic and #out >= 1 then out[1] = "batch" end
  return out
end

--- M.build(model, x, opts) -> the ONNX model table (see aviary.onnx.export)
function M.build(model, x, opts)
  opts = opts or {}
  local opset = opts.opset or 17
  if math.type(opset) ~= "integer" or opset < 13 or opset > 21 then
    error(("onnx.export: opset %s is not supported (13 to 21)"):format(tostring(opset)), 0)
  end
  local g, out = M.trace_model(model, x, opset)
  local in_name = (opts.input_names or {})[1] or "input"
  local out_name = (opts.output_names or {})[1] or "output"
  local dynamic = opts.dynamic_batch ~= false

  local out_value = g:name(out)
  local outputs = {out_value}
  if opts.fold_batchnorm then
    local rename = fold_batchnorm(g, outputs)
    out_value = rename[out_value] or out_value
  end
  -- rename the graph input and the output value
  local rename = {input = in_name}
  local produced = false
  for _, n in ipairs(g.node) do for _, o in ipairs(n.output) do if o == out_value then produced = true end end end
  if produced and out_value ~= "input" then
    rename[out_value] = out_name
  else
    g.node[#g.node + 1] = {op_type = "Identity", name = "/Identity_output", domain = "", input = {out_value},
                           output = {out_name}, attribute = {}}
  end
  for _, n in ipairs(g.node) do
    for i, v in ipairs(n.input) do if rename[v] then n.input[i] = rename[v] end end
    for i, v in ipairs(n.output) do if rename[v] then n.output[i] = rename[v] end end
  end
  local graph_outputs = {{name = out_name, elem_type = ELEM[out:dtype()] or 1, shape = shape_with_batch(out, dynamic)}}
  if opts.softmax then
    local pname = (opts.output_names or {})[2] or "probabilities"
    g.node[#g.node + 1] = {op_type = "Softmax", name = "/Softmax_probabilities", domain = "", input = {out_name},
                           output = {pname}, attribute = {A_i("axis", -1)}}
    graph_outputs[2] = {name = pname, elem_type = 1, shape = shape_with_batch(out, dynamic)}
  end
  prune(g)

  local meta = {}
  local md = opts.metadata or {}
  local keys = {}
  for k in pairs(md) do keys[#keys + 1] = k end
  table.sort(keys)
  local pre = {}
  for _, k in ipairs(keys) do
    local v = md[k]
    if k == "class_names" then
      meta[#meta + 1] = {key = "class_names", value = json.encode(v)}
    elseif k == "input_size" or k == "mean" or k == "std" or k == "resize_size" or k == "interpolation" then
      pre[k] = v
    else
      meta[#meta + 1] = {key = k, value = type(v) == "string" and v or json.encode(v)}
    end
  end
  if next(pre) then meta[#meta + 1] = {key = "preprocessing", value = json.encode(pre)} end

  return {
    ir_version = opset >= 21 and 10 or (opset >= 19 and 9 or 8),
    producer_name = opts.producer or "aviary",
    producer_version = av._VERSION or "0.1.0",
    domain = "",
    model_version = 1,
    doc_string = "",
    opset_import = {{domain = "", version = opset}},
    metadata_props = meta,
    graph = {
      name = opts.graph_name or (model.arch or model:type_name()),
      node = g.node,
      initializer = g.initializer,
      input = {{name = in_name, elem_type = ELEM[x:dtype()] or 1, shape = shape_with_batch(x, dynamic)}},
      output = graph_outputs,
      value_info = {},
    },
  }
end

-- models with their own exporter (an imported OnnxGraph) set _onnx_trace
function M.trace_model(model, x, opset)
  if model._onnx_trace then return model:_onnx_trace(x, opset, new_graph, H) end
  return M.trace(model, x, opset)
end

M.handlers = H
M.new_graph = new_graph
M.supported = function()
  local out = {"BatchNormalization", "Cast", "Clip", "Concat", "Conv", "Div", "Elu", "Erf", "Flatten", "Gather", "Gemm",
               "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "LogSoftmax",
               "MatMul", "Max", "MaxPool", "AveragePool", "Min", "Mul", "Neg", "Pad", "Pow", "ReduceMean", "ReduceSum",
               "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Softplus", "Squeeze", "Sub", "Tanh",
               "Transpose", "Unsqueeze", "Add", "Gelu", "Exp", "Log", "Sqrt", "Abs", "Reciprocal", "Floor",
               "Ceil", "ReduceMax"}
  table.sort(out)
  return out
end

return M
