--- aviary.cli: the recipes' command lines — `--name value`, `--name=value`, flags, KEY.sub=value
-- overrides — and the wrapper that turns errors into messages and exit codes.
--
--   local cli = require "aviary.cli"
--   cli.run("evaluate", usage, function(args)
--     local o = cli.parse(args, {options = {"run", "quiet", "help"}, flags = {quiet = true, help = true},
--                                ints = {grid = 1}, numbers = {perplexity = true}})
--     ...
--     return 0
--   end)
local util = require "aviary.util"

local cli = {}

local Usage = {}
Usage.__index = Usage

--- cli.usage_error(msg): stops with the usage text and exit status 2
function cli.usage_error(msg) error(setmetatable({msg = msg}, Usage), 0) end

--- cli.parse(args, spec) -> options table (o.overrides: the KEY.sub=value arguments, in order)
-- spec.options: every option name (dashes, not underscores); spec.flags: the names that take no
-- value; spec.ints = {name = minimum}; spec.numbers = {name = true} (positive numbers). An unknown
-- option names the nearest valid one; `-h` is --help.
function cli.parse(args, spec)
  local o = {overrides = {}}
  local known = {}
  for _, k in ipairs(spec.options) do known[k] = true end
  local flags = spec.flags or {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local k, v = a:match("^%-%-([%w%-_]+)=(.*)$")
    k = k or a:match("^%-%-([%w%-_]+)$")
    if k then
      k = k:gsub("_", "-")
      if not known[k] then
        cli.usage_error(("unknown option '%s' (did you mean '--%s'?)"):format(a, util.nearest(k, spec.options)))
      end
      if flags[k] then o[k] = true
      else
        if v == nil then
          v = args[i + 1]
          if v == nil then cli.usage_error("--" .. k .. " needs a value") end
          i = i + 1
        end
        o[k] = v
      end
    elseif a == "-h" then o.help = true
    elseif a:match("^[%a_][%w_%.]*=") then o.overrides[#o.overrides + 1] = a
    else cli.usage_error(("unexpected argument '%s' (overrides are KEY.sub=value)"):format(a)) end
    i = i + 1
  end
  for k, lo in pairs(spec.ints or {}) do
    if o[k] then
      local n = math.tointeger(tonumber(o[k]))
      if not n or n < lo then cli.usage_error(("--%s must be an integer >= %d, got '%s'"):format(k, lo, o[k])) end
      o[k] = n
    end
  end
  for k in pairs(spec.numbers or {}) do
    if o[k] then
      local n = tonumber(o[k])
      if not n or n <= 0 then cli.usage_error(("--%s must be a positive number, got '%s'"):format(k, o[k])) end
      o[k] = n
    end
  end
  return o
end

--- cli.run(name, usage, main [, {on_error = fn(err)}]): runs main(arg) and exits with its result (0 by
-- default); a usage error prints "name: msg" and the usage (exit 2); any other error prints
-- "name: msg" (a traceback when AVIARY_TRACEBACK is set), calls on_error, and exits 1
function cli.run(name, usage, main, opts)
  local ok, err = xpcall(main, function(e)
    if type(e) == "table" and getmetatable(e) == Usage then return e end
    if os.getenv("AVIARY_TRACEBACK") then return debug.traceback(tostring(e), 2) end
    return e
  end, arg)
  if ok then os.exit(err or 0) end
  if type(err) == "table" and getmetatable(err) == Usage then
    io.stderr:write(name .. ": " .. err.msg .. "\n" .. usage .. "\n")
    os.exit(2)
  end
  io.stderr:write(name .. ": " .. tostring(err) .. "\n")
  if opts and opts.on_error then opts.on_error(err) end
  os.exit(1)
end

return cli
