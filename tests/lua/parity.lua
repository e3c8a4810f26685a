-- PyTorch parity checks, batched: parity.check() records a case (a Python
-- expression over named input tensors and aviary's result); parity.run()
-- evaluates every recorded case in one /usr/bin/python3 process (through a
-- safetensors file) and reports each case as one test. Results are compared
-- in shape, dtype (unless opts.dtype == false) and value:
-- |a - b| <= tol * (1 + |b|), NaN equal to NaN.
local av = require "aviary"
local cjson = require "cjson"

local parity = {}
local cases = {}

function parity.check(name, expr, inputs, result, opts)
  cases[#cases + 1] = {name = name, expr = expr, inputs = inputs or {}, result = result, opts = opts or {}}
end

local torch_names = {float32 = "float32", float64 = "float64", int64 = "int64", int32 = "int32", uint8 = "uint8",
                     float16 = "float16", bfloat16 = "bfloat16"}

local function compare(a, b, opts)
  if av.is_tensor(a) == false then a = av.tensor(a) end
  local as, bs = a:size(), b:size()
  if #as ~= #bs then return false, ("size %s vs torch %s"):format(table.concat(as, "x"), table.concat(bs, "x")) end
  for i = 1, #as do
    if as[i] ~= bs[i] then return false, ("size %s vs torch %s"):format(table.concat(as, "x"), table.concat(bs, "x")) end
  end
  if opts.dtype ~= false and a:dtype() ~= b:dtype() then
    return false, ("dtype %s vs torch %s"):format(a:dtype(), b:dtype())
  end
  if a:numel() == 0 then return true end
  local tol = opts.tol or 1e-5
  local x, y = a:double():reshape(-1):tolist(), b:double():reshape(-1):tolist()
  local nbad, first = 0, nil
  for i = 1, #x do
    local u, v = x[i], y[i]
    local same = (u ~= u and v ~= v) or u == v or math.abs(u - v) <= tol * (1 + math.abs(v))
    if not same then
      nbad = nbad + 1
      first = first or i
    end
  end
  if nbad > 0 then
    return false, ("%d of %d elements differ; first at %d: aviary %.9g vs torch %.9g (tol %g)")
      :format(nbad, #x, first, x[first], y[first], tol)
  end
  return true
end

function parity.run(label)
  local batch = cases
  cases = {}
  if #batch == 0 then return end
  if not av_test.have_torch() then
    for _, c in ipairs(batch) do it("parity: " .. c.name, function() skip("python3-torch not installed") end) end
    return
  end
  local tensors, meta = {}, {}
  for i, c in ipairs(batch) do
    local id = "c" .. i
    local names = {}
    for k, t in pairs(c.inputs) do
      tensors[id .. "." .. k] = t
      names[#names + 1] = k
    end
    meta[#meta + 1] = {id = id, expr = c.expr, inputs = names}
  end
  local fin, fout = av_test.tmpname(".in.safetensors"), av_test.tmpname(".out.safetensors")
  av.save(fin, tensors, {cases = cjson.encode(meta)})
  local ok, out = av_test.python(av_test.root .. "/tests/parity/torch_eval.py", fin, fout)
  os.remove(fin)
  local results, rmeta
  if ok then results, rmeta = av.load(fout) end
  os.remove(fout)
  local errors = rmeta and cjson.decode(rmeta.errors or "{}") or {}
  for i, c in ipairs(batch) do
    it("parity: " .. c.name, function()
      if not ok then error("torch_eval.py failed: " .. out) end
      local id = "c" .. i
      if errors[id] then error("torch raised for `" .. c.expr .. "`: " .. errors[id]) end
      local mine = av.is_tensor(c.result) and {c.result} or c.result
      for k, r in ipairs(mine) do
        local ref = results[id .. "." .. k]
        if not ref then error(("torch gave fewer than %d outputs for `%s`"):format(k, c.expr)) end
        local good, why = compare(r, ref, c.opts)
        if not good then error(("output %d of `%s`: %s"):format(k, c.expr, why)) end
      end
    end)
  end
end

return parity
