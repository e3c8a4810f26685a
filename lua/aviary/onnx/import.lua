--- aviary.onnx.import: an ONNX model as an aviary.nn Module ("OnnxGraph").
-- Float initializers become nn.Parameters named by the initializer name
-- (dotted names such as 'layer1.0.conv1.weight' become child modules, so
-- state_dict() gives the same names); the running statistics of
-- BatchNormalization become buffers; other initializers (int64 shapes) are
-- constants. forward() runs the nodes in topological order with aviary's ops
-- (aviary.onnx.ops), so backward works through them.
local av = require "aviary"
local nn = require "aviary.nn"
local json = require "aviary.json"
local ops = require "aviary.onnx.ops"

local M = {}

local MIN_OPSET, MAX_OPSET = 11, 21

--- the names of the ONNX ops aviary imports, sorted
function M.supported()
  local out = {}
  for k in pairs(ops) do if type(ops[k]) == "function" and k:match("^%u") then out[#out + 1] = k end end
  table.sort(out)
  return out
end

local function attr_value(a)
  local t = a.type
  if t == "INT" then return a.i
  elseif t == "INTS" then return a.ints or {}
  elseif t == "FLOAT" then return a.f
  elseif t == "FLOATS" then return a.floats or {}
  elseif t == "STRING" then return a.s
  elseif t == "STRINGS" then return a.strings or {}
  elseif t == "TENSOR" then return a.t
  end
  if a.i ~= nil then return a.i end
  if a.f ~= nil then return a.f end
  if a.s ~= nil then return a.s end
  if a.ints ~= nil then return a.ints end
  if a.floats ~= nil then return a.floats end
  return a.t
end

--- M.check(m) -> opset, nodes in topological order; errors on a cycle, a
-- dangling input, an unsupported op or opset
function M.check(m)
  local g = m.graph
  if type(g) ~= "table" then error("onnx.load: the model has no graph", 0) end
  local opset
  for _, o in ipairs(m.opset_import or {}) do
    if o.domain == nil or o.domain == "" or o.domain == "ai.onnx" then opset = o.version end
  end
  if opset == nil then error("onnx.load: the model imports no version of the default ONNX domain (opset_import)", 0) end
  if opset < MIN_OPSET or opset > MAX_OPSET then
    error(("onnx.load: opset %d of the default domain is not supported (aviary imports opsets %d to %d)")
      :format(opset, MIN_OPSET, MAX_OPSET), 0)
  end
  local nodes = g.node or {}
  for _, n in ipairs(nodes) do
    local dom = n.domain or ""
    if (dom ~= "" and dom ~= "ai.onnx") or type(ops[n.op_type]) ~= "function" then
      error(("onnx.load: unsupported op '%s'%s in node '%s'; supported ops: %s"):format(tostring(n.op_type),
        (dom ~= "" and dom ~= "ai.onnx") and (" (domain '" .. dom .. "')") or "", n.name or "?",
        table.concat(M.supported(), ", ")), 0)
    end
  end
  -- Kahn's algorithm over value names
  local known = {[""] = true}
  for _, v in ipairs(g.input or {}) do known[v.name] = true end
  for _, e in ipairs(g.initializer or {}) do known[e.name] = true end
  local producer = {}
  for idx, n in ipairs(nodes) do for _, o in ipairs(n.output or {}) do if o ~= "" then producer[o] = idx end end end
  for _, n in ipairs(nodes) do
    for _, i in ipairs(n.input or {}) do
      if not known[i] and not producer[i] then
        error(("onnx.load: dangling input '%s' of node '%s' (%s): it is neither a graph input, an initializer "
          .. "nor another node's output"):format(i, n.name or "?", n.op_type), 0)
      end
    end
  end
  local pending, consumers = {}, {}
  for idx, n in ipairs(nodes) do
    local c = 0
    for _, i in ipairs(n.input or {}) do
      if not known[i] then
        c = c + 1
        consumers[i] = consumers[i] or {}
        table.insert(consumers[i], idx)
      end
    end
    pending[idx] = c
  end
  local order, queue, head = {}, {}, 1
  for idx = 1, #nodes do if pending[idx] == 0 then queue[#queue + 1] = idx end end
  while head <= #queue do
    local idx = queue[head]; head = head + 1
    order[#order + 1] = nodes[idx]
    for _, o in ipairs(nodes[idx].output or {}) do
      for _, c in ipairs(consumers[o] or {}) do
        pending[c] = pending[c] - 1
        if pending[c] == 0 then queue[#queue + 1] = c end
      end
    end
  end
  if #order < #nodes then
    -- walk back along unfinished producers until a node repeats: it is on a cycle
    local start
    for idx = 1, #nodes do if pending[idx] > 0 then start = idx break end end
    local seen, cur = {}, start
    while not seen[cur] do
      seen[cur] = true
      local nxt
      for _, i in ipairs(nodes[cur].input or {}) do
        local p = producer[i]
        if p and pending[p] > 0 then nxt = p break end
      end
      cur = nxt
    end
    local n = nodes[cur]
    error(("onnx.load: the graph has a cycle through node '%s' (%s)"):format(n.name or "?", n.op_type), 0)
  end
  return opset, order
end

--------------------------------------------------------------------------------
-- the module

local Container = nn.Module:extend("OnnxContainer")
function Container:__init() end

local OnnxGraph = nn.Module:extend("OnnxGraph")
M.OnnxGraph = OnnxGraph

local function valid_name(n) return n ~= "" and not n:find("..", 1, true) and n:sub(1, 1) ~= "." and n:sub(-1) ~= "." end

-- registers tensor t as a parameter (or buffer) under the (dotted) name
function OnnxGraph:_register(name, t, buffer)
  local parent, leaf = self, name
  if name:find(".", 1, true) and valid_name(name) then
    local parts = {}
    for p in name:gmatch("[^.]+") do parts[#parts + 1] = p end
    local ok = true
    local m = self
    for k = 1, #parts - 1 do
      local p = parts[k]
      local child = rawget(m, "_modules").map[p]
      if child == nil then
        if rawget(m, "_parameters").map[p] or rawget(m, "_buffers").map[p] or rawget(m, p) ~= nil or m[p] ~= nil then
          ok = false
          break
        end
        child = Container()
        m:add_module(p, child)
      end
      m = child
    end
    local last = parts[#parts]
    if ok and not rawget(m, "_modules").map[last] and m[last] == nil then parent, leaf = m, last else parent, leaf = nil, nil end
  elseif name:find(".", 1, true) then
    parent, leaf = nil, nil
  elseif rawget(self, "_modules").map[name] or OnnxGraph[name] ~= nil or rawget(self, name) ~= nil then
    parent, leaf = nil, nil
  end
  if parent == nil then
    -- a name the module system cannot hold as is: dots and clashes become '_'
    leaf = "onnx_" .. name:gsub("[^%w_:]", "_")
    parent = self
  end
  if buffer then parent:register_buffer(leaf, t) else parent:register_parameter(leaf, nn.Parameter(t)) end
  self._paths[name] = {parent, leaf}
end

function OnnxGraph:__init(m)
  local opset, order = M.check(m)
  local g = m.graph
  rawset(self, "_paths", {})
  rawset(self, "_consts", {})
  self.opset = opset
  self.ir_version = m.ir_version
  self.producer_name = m.producer_name
  self.graph_name = g.name
  local meta = {}
  for _, p in ipairs(m.metadata_props or {}) do
    local v = p.value
    if p.key == "class_names" or p.key == "preprocessing" then
      local ok, d = pcall(json.decode, v)
      if ok then v = d end
    end
    meta[p.key] = v
  end
  self.metadata = meta
  -- nodes with their attributes decoded once
  local nodes = {}
  for k, n in ipairs(order) do
    local a = {}
    for _, at in ipairs(n.attribute or {}) do a[at.name] = attr_value(at) end
    nodes[k] = {op_type = n.op_type, name = n.name or "", domain = n.domain or "", input = n.input or {},
                output = n.output or {}, attribute = n.attribute or {}, attrs = a, fn = ops[n.op_type]}
  end
  rawset(self, "_nodes", nodes)
  -- running statistics of BatchNormalization are buffers
  local stats = {}
  for _, n in ipairs(nodes) do
    if n.op_type == "BatchNormalization" then stats[n.input[4]] = true; stats[n.input[5]] = true end
  end
  local init_names = {}
  for _, e in ipairs(g.initializer or {}) do
    local t = e.tensor
    init_names[#init_names + 1] = e.name
    local dt = t:dtype()
    if dt == "float32" or dt == "float64" or dt == "float16" or dt == "bfloat16" then
      if dt == "float16" or dt == "bfloat16" then t = t:float() end
      self:_register(e.name, t, stats[e.name])
    else
      self._consts[e.name] = t
    end
  end
  rawset(self, "_init_names", init_names)
  local inits = {}
  for _, n in ipairs(init_names) do inits[n] = true end
  local inputs = {}
  for _, v in ipairs(g.input or {}) do
    if not inits[v.name] then inputs[#inputs + 1] = {name = v.name, elem_type = v.elem_type, shape = v.shape} end
  end
  rawset(self, "_inputs", inputs)
  local outputs = {}
  for k, v in ipairs(g.output or {}) do outputs[k] = {name = v.name, elem_type = v.elem_type, shape = v.shape} end
  rawset(self, "_outputs", outputs)
  if #inputs == 0 then error("onnx.load: the graph has no input", 0) end
  if #outputs == 0 then error("onnx.load: the graph has no output", 0) end
end

function OnnxGraph:_value(name)
  local p = self._paths[name]
  if p then return p[1][p[2]] end
  return self._consts[name]
end

--- model:forward(x [, ...]) -> the first graph output (all outputs with {all_outputs=true} as last argument)
function OnnxGraph:forward(...)
  local args = table.pack(...)
  local all = false
  if args.n > 0 and type(args[args.n]) == "table" and not av.is_tensor(args[args.n]) then
    all = args[args.n].all_outputs; args.n = args.n - 1
  end
  local env = {}
  for k, v in ipairs(self._inputs) do
    local x = args[k]
    if x == nil then error(("OnnxGraph: missing input %d ('%s')"):format(k, v.name), 2) end
    env[v.name] = x
  end
  local ctx = {opset = self.opset, training = self.training, module = self}
  local nodes = self._nodes
  for _, n in ipairs(nodes) do
    local ins = {}
    for k, name in ipairs(n.input) do
      if name ~= "" then
        local v = env[name]
        if v == nil then v = self:_value(name) end
        ins[k] = v
      end
    end
    local ok, outs = pcall(n.fn, ctx, ins, n.attrs, n)
    if not ok then
      local msg = tostring(outs)
      if not msg:find("^onnx: node") then msg = ("onnx: node '%s' (%s): %s"):format(n.name, n.op_type, msg) end
      error(msg, 0)
    end
    for k, name in ipairs(n.output) do if name ~= "" then env[name] = outs[k] end end
  end
  local function get(name)
    local v = env[name]
    if v == nil then v = self:_value(name) end
    return v
  end
  if all then
    local res = {}
    for k, o in ipairs(self._outputs) do res[k] = get(o.name) end
    return table.unpack(res)
  end
  return get(self._outputs[1].name)
end

--- model:replace_head(n) -> the new weight; the last Gemm (or MatMul + Add)
-- gets new weights of n outputs initialised as nn.Linear's
function OnnxGraph:replace_head(n)
  if math.type(n) ~= "integer" or n < 1 then
    error("replace_head: number of classes must be a positive integer, got " .. tostring(n), 2)
  end
  local nodes = self._nodes
  local target
  for k = #nodes, 1, -1 do
    local op = nodes[k].op_type
    if (op == "Gemm" or op == "MatMul") and self._paths[nodes[k].input[2]] then target = nodes[k] break end
  end
  if not target then error("replace_head: the graph has no Gemm or MatMul with a weight initializer", 2) end
  local wname = target.input[2]
  local w = self:_value(wname)
  local transB = target.op_type == "Gemm" and (target.attrs.transB or 0) == 1
  local in_f = transB and w:size(2) or w:size(1)
  local bound = 1 / math.sqrt(in_f)
  local function set(name, t)
    local p = self._paths[name]
    local parent, leaf = p[1], p[2]
    parent:register_parameter(leaf, nn.Parameter(t))
  end
  local neww = transB and av.empty(n, in_f) or av.empty(in_f, n)
  av.no_grad(function() neww:uniform_(-bound, bound) end)
  set(wname, neww)
  -- the bias: Gemm's C, or the Add that follows a MatMul
  local bname
  if target.op_type == "Gemm" then
    bname = target.input[3]
  else
    for _, m in ipairs(nodes) do
      if m.op_type == "Add" and (m.input[1] == target.output[1] or m.input[2] == target.output[1]) then
        bname = m.input[1] == target.output[1] and m.input[2] or m.input[1]
        break
      end
    end
  end
  if bname and bname ~= "" and self._paths[bname] then
    local b = av.empty(n)
    av.no_grad(function() b:uniform_(-bound, bound) end)
    set(bname, b)
  end
  for _, o in ipairs(self._outputs) do
    if o.shape and #o.shape == 2 then o.shape[2] = n end
  end
  return neww
end

--- the module's graph for aviary.onnx.export: the imported nodes with the
-- current parameter values as initializers
function OnnxGraph:_onnx_trace(x, opset, new_graph)
  if opset ~= self.opset then
    for _, n in ipairs(self._nodes) do
      local op = n.op_type
      local changes = (op == "ReduceMean" or op == "ReduceMax") and ((opset >= 18) ~= (self.opset >= 18))
        or (op == "Unsqueeze" or op == "Squeeze" or op == "ReduceSum" or op == "Softmax" or op == "LogSoftmax")
          and ((opset >= 13) ~= (self.opset >= 13))
        or (op == "Gelu" and opset < 20)
      if changes then
        error(("onnx.export: the imported graph's %s nodes are written for opset %d; export it at that opset")
          :format(op, self.opset), 0)
      end
    end
  end
  local out = av.no_grad(function()
    local was = self.training
    self:evaluate()
    local ok, r = pcall(self.forward, self, x)
    if was then self:train(true) end
    if not ok then error(r, 0) end
    return r
  end)
  local g = new_graph(opset)
  local in_name = self._inputs[1].name
  local function ren(v) if v == in_name then return "input" end return v end
  local nodes = {}
  for k, n in ipairs(self._nodes) do
    local ins, outs = {}, {}
    for j, v in ipairs(n.input) do ins[j] = ren(v) end
    for j, v in ipairs(n.output) do outs[j] = v end
    nodes[k] = {op_type = n.op_type, name = n.name ~= "" and n.name or ("node_" .. k), domain = n.domain,
                input = ins, output = outs, attribute = n.attribute}
  end
  g.node = nodes
  for _, name in ipairs(self._init_names) do
    local t = self:_value(name)
    if t ~= nil then g:add_init(name, t) end
  end
  g.names[out] = ren(self._outputs[1].name)
  return g, out
end

return M
