-- A small busted-style test runner that runs inside bin/aviary (so that a
-- sanitizer build of the host covers the whole process). Tests run as they
-- are declared; each `it` is isolated with xpcall. Output is TAP-like:
--   ok - lua: <file>: <describe> > <it>
--   not ok - ...      (followed by "#"-prefixed diagnostics)
--   ok - ... # SKIP <reason>
-- and a last line "N passed, N failed, N skipped".
-- usage: aviary tests/lua/runner.lua file.lua [file.lua ...] [--filter=substr]

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local stats = {passed = 0, failed = 0, skipped = 0}
local stack, current_file, filter = {}, "?", nil

local SKIP = setmetatable({}, {__tostring = function() return "skip" end})

local function full_name(name)
  local parts = {}
  for _, d in ipairs(stack) do parts[#parts + 1] = d end
  parts[#parts + 1] = name
  return table.concat(parts, " > ")
end

function describe(name, fn)
  stack[#stack + 1] = name
  local ok, err = xpcall(fn, debug.traceback)
  if not ok then
    stats.failed = stats.failed + 1
    print(("not ok - lua: %s: %s (error outside an it block)"):format(current_file, full_name("")))
    print("#   " .. tostring(err):gsub("\n", "\n#   "))
  end
  stack[#stack] = nil
end

function skip(reason) error({[SKIP] = true, reason = reason or "skipped"}, 0) end

function it(name, fn)
  local title = full_name(name)
  if filter and not title:find(filter, 1, true) then return end
  local ok, err = xpcall(fn, function(e)
    if type(e) == "table" and e[SKIP] then return e end
    -- keep the message and the frames inside test files
    local tb = debug.traceback(tostring(e), 2)
    local keep = {}
    for line in tb:gmatch("[^\n]+") do
      if #keep == 0 or (line:find("tests/", 1, true) and not line:find("runner.lua", 1, true)) then keep[#keep + 1] = line end
    end
    return table.concat(keep, "\n")
  end)
  if ok then
    stats.passed = stats.passed + 1
    print(("ok - lua: %s: %s"):format(current_file, title))
  elseif type(err) == "table" and err[SKIP] then
    stats.skipped = stats.skipped + 1
    print(("ok - lua: %s: %s # SKIP %s"):format(current_file, title, err.reason))
  else
    stats.failed = stats.failed + 1
    print(("not ok - lua: %s: %s"):format(current_file, title))
    print("#   " .. tostring(err):gsub("\n", "\n#   "))
  end
  io.stdout:flush()
  collectgarbage()
end

function pending(name) it(name, function() skip("pending") end) end

-- assertions --------------------------------------------------------------
local base_assert = assert
local A = {}
assert = setmetatable(A, {__call = function(_, v, msg, ...)
  if not v then error(msg or "assertion failed!", 2) end
  return v, msg, ...
end})

local function fmt(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

function A.equal(a, b, msg)
  if a ~= b then error((msg and msg .. ": " or "") .. ("expected %s, got %s"):format(fmt(b), fmt(a)), 2) end
end
A.equals = A.equal

local function deep_equal(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not deep_equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
local function dump(v, depth)
  depth = depth or 0
  if type(v) ~= "table" or depth > 3 then return fmt(v) end
  local out = {}
  for i, x in ipairs(v) do out[#out + 1] = dump(x, depth + 1) end
  for k, x in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= #v) then out[#out + 1] = tostring(k) .. "=" .. dump(x, depth + 1) end
  end
  return "{" .. table.concat(out, ", ") .. "}"
end
function A.same(a, b, msg)
  if not deep_equal(a, b) then
    error((msg and msg .. ": " or "") .. ("expected %s, got %s"):format(dump(b), dump(a)), 2)
  end
end

function A.near(a, b, tol, msg)
  tol = tol or 1e-6
  local ok = math.abs(a - b) <= tol or (a ~= a and b ~= b)
  if not ok then error((msg and msg .. ": " or "") .. ("expected %s (tol %g), got %s"):format(fmt(b), tol, fmt(a)), 2) end
end

function A.truthy(v, msg) if not v then error(msg or ("expected a truthy value, got " .. fmt(v)), 2) end end
function A.falsy(v, msg) if v then error(msg or ("expected a falsy value, got " .. fmt(v)), 2) end end

-- fn must raise an error whose message contains `substr` (plain match)
function A.error_matches(fn, substr, msg)
  local ok, err = pcall(fn)
  if ok then error((msg and msg .. ": " or "") .. "expected an error containing " .. fmt(substr) .. ", got none", 2) end
  err = tostring(err)
  if not err:find(substr, 1, true) then
    error((msg and msg .. ": " or "") .. ("expected an error containing %s, got %s"):format(fmt(substr), fmt(err)), 2)
  end
end
A.has_error = function(fn, msg)
  if pcall(fn) then error(msg or "expected an error", 2) end
end

-- tensor (or nested table) t equals expected within tol, elementwise
function A.tensor_near(t, expected, tol, msg)
  local av = require "aviary"
  tol = tol or 1e-6
  local e = av.is_tensor(expected) and expected or av.tensor(expected, {dtype = "float64"})
  local ts, es = t:size(), e:size()
  if not deep_equal(ts, es) then
    error((msg and msg .. ": " or "") .. ("size %s, expected %s"):format(dump(ts), dump(es)), 2)
  end
  if t:numel() == 0 then return end
  local a, b = t:double():reshape(-1), e:double():reshape(-1)
  for i = 1, a:numel() do
    local x, y = a[i], b[i]
    if not (math.abs(x - y) <= tol * (1 + math.abs(y)) or (x ~= x and y ~= y) or x == y) then
      error((msg and msg .. ": " or "") .. ("element %d is %.9g, expected %.9g (tol %g)"):format(i, x, y, tol), 2)
    end
  end
end

-- helpers for tests ---------------------------------------------------------
av_test = {}
av_test.python_bin = os.getenv("AVIARY_PYTHON") or "/usr/bin/python3"
av_test.root = here:match("^(.*)/tests/lua$") or (here == "tests/lua" and ".") or (here .. "/../..")
local tmp_counter = 0
function av_test.tmpdir()
  local d = os.getenv("AVIARY_TEST_TMP") or (av_test.root .. "/tests/.tmp")
  os.execute("mkdir -p '" .. d .. "'")
  return d
end
function av_test.tmpname(suffix)
  tmp_counter = tmp_counter + 1
  return ("%s/t%d_%d%s"):format(av_test.tmpdir(), math.random(1, 1e9), tmp_counter, suffix or "")
end
-- runs python with args; returns ok, stdout (stderr is appended on failure)
function av_test.python(script, ...)
  local args = {}
  for _, a in ipairs({...}) do args[#args + 1] = "'" .. tostring(a):gsub("'", "'\\''") .. "'" end
  local errf = av_test.tmpname(".err")
  local cmd = ("%s '%s' %s 2>'%s'"):format(av_test.python_bin, script, table.concat(args, " "), errf)
  local p = io.popen(cmd, "r")
  local out = p:read("a")
  local ok = p:close()
  local f = io.open(errf)
  local err = f and f:read("a") or ""
  if f then f:close() end
  os.remove(errf)
  if not ok then out = out .. err end
  return ok, out
end
local torch_ok
function av_test.have_torch()
  if torch_ok == nil then
    torch_ok = os.execute(av_test.python_bin .. " -c 'import torch' >/dev/null 2>&1") == true
  end
  return torch_ok
end

-- main -------------------------------------------------------------------------
local files = {}
for _, a in ipairs(arg) do
  local f = a:match("^%-%-filter=(.*)$")
  if f then filter = f else files[#files + 1] = a end
end
math.randomseed(os.time())
for _, f in ipairs(files) do
  current_file = f:match("([^/]+)$")
  local chunk, err = loadfile(f)
  if not chunk then
    stats.failed = stats.failed + 1
    print(("not ok - lua: %s: cannot load"):format(current_file))
    print("#   " .. err)
  else
    describe(current_file:gsub("%.lua$", ""), chunk)
  end
end
print(("%d passed, %d failed, %d skipped"):format(stats.passed, stats.failed, stats.skipped))
base_assert(true)
os.exit(stats.failed == 0 and 0 or 1)
