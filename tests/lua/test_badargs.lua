-- Table-driven robustness test: every function and method exposed to Lua is
-- called with many wrong (and some right) argument lists. Each call must
-- either return or raise a Lua error whose message names the function; none
-- may crash or read out of bounds (this file runs under `make asan` too).
local av = require "aviary"

local function tensors()
  return {
    av.randn(2, 3),
    av.zeros(0, 3),
    av.tensor(2.5),
    av.tensor({1, 2, 3}),
    av.tensor({1, 0, 1}, {dtype = "uint8"}),
    av.randn(3, 2):t(),
    av.randn(1, 3):expand(4, 3),
    av.ones(2, 3, {dtype = "float64"}),
    av.ones(2, 2):half(),
  }
end

local HUGE = 1 << 40
local function arg_lists(t)
  local ts = tensors()
  local lists = {
    {}, {nil}, {"x"}, {{}}, {1.5}, {-1}, {0}, {3}, {HUGE}, {-HUGE}, {true}, {print},
    {{1, 2}}, {{-1}}, {{"a"}}, {{1.5}}, {{HUGE, HUGE}},
    {1, 2}, {2, 3}, {0, 0}, {-1, -1}, {3, 1}, {1, 1, 1}, {HUGE, 1}, {1, "x"},
    {2, {dtype = "float33"}}, {2, {dtype = 5}}, {2, {dtype = "float64"}},
    {{2, 3}, 1}, {{2, 3}, "x"},
  }
  for _, x in ipairs(ts) do
    lists[#lists + 1] = {x}
    lists[#lists + 1] = {x, x}
    lists[#lists + 1] = {x, 1}
    lists[#lists + 1] = {x, -1}
    lists[#lists + 1] = {x, 0}
    lists[#lists + 1] = {x, 5}
    lists[#lists + 1] = {x, 1.5}
    lists[#lists + 1] = {x, "x"}
    lists[#lists + 1] = {x, {}}
    lists[#lists + 1] = {x, {1, 2, 3, 4, 5, 6, 7, 8, 9}}
    lists[#lists + 1] = {x, 1, 1}
    lists[#lists + 1] = {x, 1, 2, 3}
    lists[#lists + 1] = {x, 2, HUGE}
    lists[#lists + 1] = {x, ts[1], ts[2]}
    lists[#lists + 1] = {x, ts[4], ts[1]}
    lists[#lists + 1] = {x, 1, ts[4]}
    lists[#lists + 1] = {x, 1, ts[4], ts[1]}
    lists[#lists + 1] = {{x, ts[1]}}
    lists[#lists + 1] = {{x, x}, 1}
  end
  if t then
    for _, l in ipairs(lists) do table.insert(l, 1, t) end
  end
  return lists
end

-- functions with effects outside the call are exercised by their own tests
local skip = {set_num_threads = true, manual_seed = true, save = true, _metatable = true}

local function check_call(label, fn, args)
  local ok, err = pcall(fn, table.unpack(args, 1, 10))
  if not ok then
    if type(err) ~= "string" then error(label .. ": raised a non-string error: " .. tostring(err)) end
    if not (err:find("aviary", 1, true) or err:find("Tensor", 1, true) or err:find("bad argument", 1, true)) then
      error(label .. ": error does not name the function: " .. err)
    end
  end
end

describe("every module function with wrong arguments", function()
  local names = {}
  for k, v in pairs(av) do
    if type(v) == "function" and not skip[k] then names[#names + 1] = k end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    it("av." .. name, function()
      for i, args in ipairs(arg_lists()) do check_call(("av.%s (case %d)"):format(name, i), av[name], args) end
    end)
  end
end)

describe("every tensor method with wrong arguments", function()
  local names = {}
  for k, v in pairs(av.Tensor) do
    if type(v) == "function" and not skip[k] then names[#names + 1] = k end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    it("Tensor:" .. name, function()
      for _, self in ipairs(tensors()) do
        for i, args in ipairs(arg_lists(self)) do
          check_call(("Tensor:%s (case %d)"):format(name, i), av.Tensor[name], args)
        end
      end
    end)
  end
end)

describe("metamethods with wrong operands", function()
  it("arithmetic, indexing, length and printing", function()
    local bad = {"x", {}, true, print}
    for _, x in ipairs(tensors()) do
      for _, b in ipairs(bad) do
        check_call("__add", function() return x + b end, {})
        check_call("__mul", function() return b * x end, {})
        check_call("__pow", function() return x ^ b end, {})
        check_call("__index", function() return x[b] end, {})
        check_call("__newindex", function() x[1] = b end, {})
      end
      for _, i in ipairs({0, -100, 100, HUGE, 1.5, {{1, 100}}, {{5, 2}}, {1, 1, 1, 1, 1, 1, 1, 1, 1}}) do
        check_call("__index", function() return x[i] end, {})
        check_call("__newindex", function() x[i] = 1 end, {})
      end
      check_call("__len", function() return #x end, {})
      assert.equal(type(tostring(x)), "string")
      check_call("__unm", function() return -x end, {})
    end
  end)
  it("a method called on a non-tensor names the method", function()
    assert.error_matches(function() av.Tensor.sum(5) end, "expected a tensor as argument 1, got number")
    assert.error_matches(function() av.Tensor.view("x", 2) end, "expected a tensor as argument 1, got string")
  end)
end)
