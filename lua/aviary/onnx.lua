--- aviary.onnx: ONNX export by tracing and ONNX import as an aviary module.
--   local onnx = require "aviary.onnx"
--   onnx.export(model, av.randn(1, 3, 224, 224), "model.onnx", {opset = 17, dynamic_batch = true})
--   local net = onnx.load("model.onnx")        -- an nn.Module ("OnnxGraph")
--   local logits = net(x); net:replace_head(5)
-- Reading and writing the protobuf is the C binding av._onnx; this module
-- works on its table form (see lua/aviary/onnx/export.lua and import.lua).
local av = require "aviary"

local onnx = {}

local function binding()
  local O = rawget(av, "_onnx") or require("aviary.core")._onnx
  if O == nil then error("aviary.onnx: this build has no ONNX binding (av._onnx)", 3) end
  return O
end

local function check_path(who, path)
  if type(path) ~= "string" or path == "" then error(("%s: expected a file path, got %s"):format(who, type(path)), 3) end
end

local EXPORT_KEYS = {opset = true, input_names = true, output_names = true, dynamic_batch = true, fold_batchnorm = true,
                     softmax = true, metadata = true, producer = true, graph_name = true}

--- onnx.to_table(model, example_input, opts) -> the ONNX model as av._onnx's table (nothing written)
function onnx.to_table(model, x, opts)
  local nn = require "aviary.nn"
  if not nn.is_module(model) then error("onnx.export: expected a module, got " .. type(model), 2) end
  if not av.is_tensor(x) then error("onnx.export: the example input must be a tensor, got " .. type(x), 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("onnx.export: options must be a table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not EXPORT_KEYS[k] then
      local names = {}
      for n in pairs(EXPORT_KEYS) do names[#names + 1] = n end
      table.sort(names)
      error(("onnx.export: unknown option '%s' (valid: %s)"):format(tostring(k), table.concat(names, ", ")), 2)
    end
  end
  local ok, m = pcall(require("aviary.onnx.export").build, model, x, opts)
  if not ok then error(m, 2) end
  return m
end

--- onnx.export(model, example_input, path, {opset=17, input_names={'input'}, output_names={'output'},
--   dynamic_batch=true, fold_batchnorm=false, softmax=false, metadata={class_names=, input_size=, mean=, std=},
--   producer='aviary'}) -> path
-- Traces model:forward(example_input) in evaluation mode and writes the graph
-- (atomically). metadata.class_names is stored as JSON under 'class_names',
-- input_size/mean/std/resize_size/interpolation as JSON under 'preprocessing',
-- any other key as its string (or JSON). softmax=true adds a second output,
-- 'probabilities'. An op the exporter cannot express is an error naming it.
function onnx.export(model, x, path, opts)
  check_path("onnx.export", path)
  local m = onnx.to_table(model, x, opts)
  local O = binding()
  local ok, err = pcall(O.write, path, m)
  if not ok then error(("onnx.export: writing '%s': %s"):format(path, tostring(err)), 2) end
  return path
end

--- onnx.from_table(m) -> an OnnxGraph module from av._onnx's table form
function onnx.from_table(m)
  local imp = require "aviary.onnx.import"
  local ok, mod = pcall(imp.OnnxGraph, m)
  if not ok then error(mod, 2) end
  mod:evaluate()
  return mod
end

--- onnx.load(path) -> an nn.Module ("OnnxGraph") in evaluation mode whose
-- parameters are the float initializers (named by the initializer name);
-- model.metadata holds the metadata_props (class_names and preprocessing
-- decoded from JSON), model.opset the default domain's opset.
function onnx.load(path)
  check_path("onnx.load", path)
  local O = binding()
  local ok, m = pcall(O.read, path)
  if not ok then error(("onnx.load: reading '%s': %s"):format(path, tostring(m)), 2) end
  local ok2, mod = pcall(onnx.from_table, m)
  if not ok2 then error(mod, 2) end
  return mod
end

--- onnx.supported_ops() -> {import = {...}, export = {...}}; also a list of
-- the ops import supports (the array part), sorted
function onnx.supported_ops()
  local imp = require("aviary.onnx.import").supported()
  local out = {}
  for i, v in ipairs(imp) do out[i] = v end
  out.import = imp
  out.export = require("aviary.onnx.export").supported()
  return out
end

return onnx
