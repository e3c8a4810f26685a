--- aviary.inference: a model's evaluation-mode forward pass compiled for fast CPU inference.
--   local inference = require "aviary.inference"
--   local fast = inference.compile(net, av.randn(1, 3, 224, 224))   -- or an onnx.load(...) graph
--   local logits = fast(x)                                          -- any batch size
-- The model is traced once (as aviary.onnx.export traces it), batch norm is
-- folded into the convolutions, ReLU and the residual add become the
-- convolutions' post-ops, and the runs of convolutions, pooling, adds and
-- ReLUs go to one oneDNN plan (runtime/ops/cpu/infer_dnnl.c) whose
-- activations stay in oneDNN's blocked layout between layers. The other
-- nodes (flatten, the classifier, concat, ...) run as aviary ops. The result
-- is a snapshot: weights changed afterwards need a new compile. No autograd.
local av = require "aviary"
local core = require "aviary.core"
local nn = require "aviary.nn"

local inference = {}

local infer = core._infer

--- inference.available() -> true when this build can make inference plans (oneDNN)
function inference.available() return infer ~= nil and infer.available() end

-- ONNX nodes the plan runs (others run as aviary ops)
local PLANNED = {Conv = true, BatchNormalization = true, Relu = true, Add = true, MaxPool = true, AveragePool = true,
                 GlobalAveragePool = true, Clip = true}

local function pads_of(a)
  local ap = a.auto_pad or "NOTSET"
  if ap == "VALID" then return {0, 0, 0, 0} end
  if ap ~= "NOTSET" then return nil end -- SAME_*: depends on the input size
  return a.pads or {0, 0, 0, 0}
end

-- W' = W * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta, in float64
local function fold_bn(w, b, gamma, beta, mean, var, eps)
  local scale = gamma:double() / (var:double() + eps):sqrt()
  local co = w:size(1)
  local w2 = (w:double() * scale:view(co, 1, 1, 1)):float():contiguous()
  local b0 = b and b:double() or av.zeros(co, {dtype = "float64"})
  local b2 = ((b0 - mean:double()) * scale + beta:double()):float():contiguous()
  return w2, b2
end

-- the graph form of a model: an OnnxGraph as it is, any other module traced
local function graph_of(model, example)
  if rawget(model, "_nodes") and model._value then return model end
  if not av.is_tensor(example) then
    error("inference.compile: an example input tensor is needed to trace the model (e.g. av.randn(1, 3, 224, 224))", 3)
  end
  local onnx = require "aviary.onnx"
  local was_training = model.training
  model:evaluate()
  local ok, m = pcall(onnx.to_table, model, example:narrow(1, 1, 1), {dynamic_batch = true})
  if was_training then model:train() end
  if not ok then error("inference.compile: tracing the model failed: " .. tostring(m), 3) end
  return onnx.from_table(m)
end

-- how many nodes read each value (graph outputs count as readers)
local function readers(nodes, outputs)
  local r = {}
  for _, n in ipairs(nodes) do
    for _, name in ipairs(n.input) do if name ~= "" then r[name] = (r[name] or 0) + 1 end end
  end
  for _, o in ipairs(outputs) do r[o.name] = (r[o.name] or 0) + 1 end
  return r
end

-- the constant tensor behind a name, or nil when it is computed
local function const(g, name)
  if name == nil or name == "" then return nil end
  return g:_value(name)
end

-- a Clip node's constant bounds (inputs since opset 11, attributes before), or nil
local function clip_bounds(g, n)
  local function scalar(name)
    if name == nil or name == "" then return nil, true end
    local t = g:_value(name)
    if not av.is_tensor(t) or t:numel() ~= 1 then return nil, false end
    return t:item(), true
  end
  local lo, ok1 = scalar(n.input[2])
  local hi, ok2 = scalar(n.input[3])
  if not (ok1 and ok2) then return nil end
  lo = lo or n.attrs.min or -math.huge
  hi = hi or n.attrs.max or math.huge
  return lo, hi
end

-- can node n run in a plan? (constants must be weights, layouts simple, 2-d; ReLU and Add
-- only on values known to be 4-d, i.e. made by planned nodes)
local function plannable(g, n, known4d)
  if not PLANNED[n.op_type] then return false end
  local a = n.attrs
  if n.op_type == "Conv" then
    local w = const(g, n.input[2])
    return w ~= nil and w:dim() == 4 and w:dtype() == "float32" and pads_of(a) ~= nil and
      (n.input[3] == nil or n.input[3] == "" or const(g, n.input[3]) ~= nil)
  elseif n.op_type == "BatchNormalization" then
    return false -- only folded into a convolution (see below)
  elseif n.op_type == "MaxPool" or n.op_type == "AveragePool" then
    local d = a.dilations
    return a.kernel_shape ~= nil and #a.kernel_shape == 2 and pads_of(a) ~= nil and (d == nil or (d[1] == 1 and d[2] == 1))
      and (a.storage_order or 0) == 0 and #n.output == 1
  elseif n.op_type == "Add" then
    return known4d[n.input[1]] == true and known4d[n.input[2]] == true
  elseif n.op_type == "Relu" then
    return known4d[n.input[1]] == true
  elseif n.op_type == "Clip" then
    return known4d[n.input[1]] == true and clip_bounds(g, n) ~= nil
  end
  return true
end

-- The plan's steps: a list of "segments" (runs of plannable nodes, each one
-- oneDNN plan) and "eager" nodes, in graph order.
local function schedule(g)
  local nodes, outputs = g._nodes, g._outputs
  local r = readers(nodes, outputs)
  local producer = {}
  for k, n in ipairs(nodes) do for _, o in ipairs(n.output) do producer[o] = k end end
  local consumed = {} -- node index -> fused into another
  local fused = {}    -- conv node index -> {bn=, add=, other=, relu=, out=}
  local function only_reader(name, op)
    if r[name] ~= 1 then return nil end
    for k, n in ipairs(nodes) do
      if not consumed[k] then
        for _, i in ipairs(n.input) do
          if i == name then return n.op_type == op and k or nil end
        end
      end
    end
  end
  -- one pass in graph order: fusions, and which values are surely 4-d
  local known4d, can = {}, {}
  for _, v in ipairs(g._inputs) do if v.shape and #v.shape == 4 then known4d[v.name] = true end end
  for k, n in ipairs(nodes) do
    if not consumed[k] then can[k] = plannable(g, n, known4d) end
    if can[k] and n.op_type == "Conv" then
      local f = {out = n.output[1]}
      known4d[f.out] = true
      local bn = only_reader(f.out, "BatchNormalization")
      if bn and nodes[bn].input[1] == f.out and #nodes[bn].output >= 1 then
        local b = nodes[bn]
        local ok = true
        for j = 2, 5 do if const(g, b.input[j]) == nil then ok = false end end
        if ok then f.bn = bn; consumed[bn] = true; f.out = b.output[1]; known4d[f.out] = true end
      end
      local add = only_reader(f.out, "Add")
      if add then
        local a = nodes[add]
        local other = a.input[1] == f.out and a.input[2] or a.input[1]
        -- the residual must be a 4-d value that exists before the convolution runs
        if other ~= f.out and known4d[other] and (producer[other] == nil or producer[other] < k) then
          f.add, f.other = add, other
          consumed[add] = true
          f.out = a.output[1]
          known4d[f.out] = true
        end
      end
      local relu = only_reader(f.out, "Relu")
      if relu then f.relu = relu; consumed[relu] = true; f.out = nodes[relu].output[1]; known4d[f.out] = true end
      local clip = only_reader(f.out, "Clip")
      if clip and clip_bounds(g, nodes[clip]) then
        f.clip = clip; consumed[clip] = true; f.out = nodes[clip].output[1]; known4d[f.out] = true
      end
      fused[k] = f
    elseif can[k] then
      for _, o in ipairs(n.output) do known4d[o] = true end
    end
  end
  local steps, seg = {}, nil
  for k, n in ipairs(nodes) do
    if not consumed[k] then
      if can[k] then
        if not seg then seg = {kind = "segment", nodes = {}}; steps[#steps + 1] = seg end
        seg.nodes[#seg.nodes + 1] = k
      else
        seg = nil
        steps[#steps + 1] = {kind = "eager", node = k}
      end
    end
  end
  return steps, fused, r
end

-- builds the oneDNN plan of one segment: its inputs (names read from outside) and outputs
-- (names read after it or graph outputs)
local function build_segment(g, seg, fused, r)
  local nodes = g._nodes
  local plan = infer.new()
  local val, inputs, produced = {}, {}, {}
  local function value(name)
    local v = val[name]
    if v then return v end
    if #inputs == 8 then return nil end
    v = plan:input()
    val[name] = v
    inputs[#inputs + 1] = name
    return v
  end
  local reads_inside = {}
  for _, k in ipairs(seg.nodes) do
    local n = nodes[k]
    local a = n.attrs
    local out
    if n.op_type == "Conv" then
      local f = fused[k]
      local w, b = const(g, n.input[2]), const(g, n.input[3])
      if f.bn then
        local bn = nodes[f.bn]
        w, b = fold_bn(w, b, const(g, bn.input[2]), const(g, bn.input[3]), const(g, bn.input[4]),
          const(g, bn.input[5]), bn.attrs.epsilon or 1e-5)
      else
        w, b = w:float():contiguous(), b and b:float():contiguous() or nil
      end
      local p = pads_of(a)
      local x = value(n.input[1])
      local res = f.other and value(f.other) or nil
      if x == nil or (f.other and res == nil) then return nil end
      out = plan:conv(x, w, b, a.strides or {1, 1}, {p[1], p[2]}, {p[3], p[4]}, a.dilations or {1, 1}, a.group or 1,
        res, f.relu ~= nil)
      if f.clip then plan:fuse_clip(out, clip_bounds(g, nodes[f.clip])) end
      produced[f.out] = out
      val[f.out] = out
      reads_inside[n.input[1]] = (reads_inside[n.input[1]] or 0) + 1
      if f.other then reads_inside[f.other] = (reads_inside[f.other] or 0) + 1 end
    else
      local x = value(n.input[1])
      if x == nil then return nil end
      reads_inside[n.input[1]] = (reads_inside[n.input[1]] or 0) + 1
      if n.op_type == "Relu" then
        out = plan:relu(x)
      elseif n.op_type == "Clip" then
        out = plan:clip(x, clip_bounds(g, n))
      elseif n.op_type == "Add" then
        local y = value(n.input[2])
        if y == nil then return nil end
        reads_inside[n.input[2]] = (reads_inside[n.input[2]] or 0) + 1
        out = plan:add(x, y, false)
      elseif n.op_type == "GlobalAveragePool" then
        out = plan:pool(x, 1, {0, 0}, {1, 1}, {0, 0}, {0, 0})
      else
        local p = pads_of(a)
        local kind = n.op_type == "MaxPool" and 0 or ((a.count_include_pad or 0) == 1 and 2 or 1)
        if (a.ceil_mode or 0) == 1 then kind = kind + 4 end
        out = plan:pool(x, kind, a.kernel_shape, a.strides or {1, 1}, {p[1], p[2]}, {p[3], p[4]})
      end
      produced[n.output[1]] = out
      val[n.output[1]] = out
    end
  end
  -- values read outside the segment (or graph outputs) come out of the plan
  local outs = {}
  for name, v in pairs(produced) do
    if (r[name] or 0) > (reads_inside[name] or 0) then outs[#outs + 1] = {name = name, v = v} end
  end
  table.sort(outs, function(x, y) return x.v < y.v end)
  local names = {}
  for i, o in ipairs(outs) do plan:output(o.v); names[i] = o.name end
  return {plan = plan, inputs = inputs, outputs = names}
end

local Compiled = nn.Module:extend("InferencePlan")
inference.Compiled = Compiled

function Compiled:__init(g, steps, stats)
  -- the constants the aviary-op nodes read, copied, so that the whole result is a snapshot
  local consts = {}
  for _, s in ipairs(steps) do
    if s.kind == "eager" then
      for _, name in ipairs(g._nodes[s.node].input) do
        local v = name ~= "" and consts[name] == nil and g:_value(name) or nil
        if v ~= nil then consts[name] = av.is_tensor(v) and v:detach():clone() or v end
      end
    end
  end
  rawset(self, "_consts", consts)
  rawset(self, "_graph", g)
  rawset(self, "_steps", steps)
  self.stats = stats
  self.training = false
end

function Compiled:train(mode)
  if mode ~= false then error("InferencePlan: a compiled plan only runs inference (compile the model again after training)", 2) end
  return self
end

--- fast(x) -> the model's output (the first graph output)
function Compiled:forward(...)
  local g = self._graph
  local env = {}
  local args = table.pack(...)
  for k, v in ipairs(g._inputs) do
    local x = args[k]
    if not av.is_tensor(x) then error(("InferencePlan: input %d ('%s') must be a tensor"):format(k, v.name), 2) end
    env[v.name] = x
  end
  local consts = self._consts
  local function get(name)
    local v = env[name]
    if v == nil then v = consts[name] end
    return v
  end
  local ctx = {opset = g.opset, training = false, module = g}
  local nodes = g._nodes
  return av.no_grad(function()
    for _, s in ipairs(self._steps) do
      if s.kind == "eager" then
        local n = nodes[s.node]
        local ins = {}
        for k, name in ipairs(n.input) do if name ~= "" then ins[k] = get(name) end end
        local ok, outs = pcall(n.fn, ctx, ins, n.attrs, n)
        if not ok then error(("InferencePlan: node '%s' (%s): %s"):format(n.name, n.op_type, tostring(outs)), 0) end
        for k, name in ipairs(n.output) do if name ~= "" then env[name] = outs[k] end end
      else
        local ins = {}
        for k, name in ipairs(s.inputs) do
          local x = get(name)
          if x:dtype() ~= "float32" then x = x:float() end
          ins[k] = x
        end
        local outs = table.pack(s.plan:run(table.unpack(ins)))
        for k, name in ipairs(s.outputs) do env[name] = outs[k] end
      end
    end
    return get(g._outputs[1].name)
  end)
end

--- inference.compile(model, example_input) -> an nn.Module that runs model's evaluation-mode
-- forward through oneDNN inference plans. model is any traceable aviary module (example_input
-- is needed then) or a graph from aviary.onnx.load. Without oneDNN in the build, it returns a
-- module that runs the same graph with aviary's ops (and says so in .stats.planned = 0).
function inference.compile(model, example)
  if not nn.is_module(model) then error("inference.compile: expected a module, got " .. type(model), 2) end
  local g = graph_of(model, example)
  local steps, fused, r = g._nodes, {}, nil
  if inference.available() then
    steps, fused, r = schedule(g)
  else
    local list = {}
    for k = 1, #g._nodes do list[k] = {kind = "eager", node = k} end
    steps = list
  end
  local out, stats = {}, {planned = 0, eager = 0, segments = 0, folded_bn = 0, fused_relu = 0, fused_add = 0, fused_clip = 0}
  for _, s in ipairs(steps) do
    if s.kind == "segment" then
      local built = build_segment(g, s, fused, r)
      if built then
        built.kind = "plan"
        out[#out + 1] = built
        stats.segments = stats.segments + 1
        for _, k in ipairs(s.nodes) do
          stats.planned = stats.planned + 1
          local f = fused[k]
          if f then
            if f.bn then stats.folded_bn = stats.folded_bn + 1 end
            if f.relu then stats.fused_relu = stats.fused_relu + 1 end
            if f.add then stats.fused_add = stats.fused_add + 1 end
            if f.clip then stats.fused_clip = stats.fused_clip + 1 end
          end
        end
      else -- too many inputs for one plan: run the nodes as aviary ops
        for _, k in ipairs(s.nodes) do
          local f = fused[k]
          for _, j in ipairs({k, f and f.bn or false, f and f.add or false, f and f.relu or false, f and f.clip or false}) do
            if j then out[#out + 1] = {kind = "eager", node = j}; stats.eager = stats.eager + 1 end
          end
        end
      end
    else
      out[#out + 1] = s
      stats.eager = stats.eager + 1
    end
  end
  return Compiled(g, out, stats)
end

return inference
