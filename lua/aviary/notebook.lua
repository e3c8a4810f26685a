--- aviary.notebook: literate Lua walkthroughs (notebooks/*.lua) run into Jupyter notebooks and HTML pages.
--
-- A notebook is a Lua file: `--[[md ... ]]` blocks are markdown cells, `-- %%` lines split code cells, and
-- the first code cell is
--   NB = require("aviary.notebook").setup(...)
-- `bin/aviary notebook run notebooks/002_train.lua [--quick]` runs it cell by cell and writes
-- notebooks/out/002_train.ipynb and .html; `bin/aviary notebooks/002_train.lua [--quick]` runs it as a
-- plain script. See docs/notebooks.md.
local parse = require "aviary.notebook.parse"

local M = {}

M.parse = parse.parse

local active -- the context of the run in progress (setup returns it)

local function module_root()
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/lua/aviary/notebook%.lua$")
  if dir and dir ~= "" then return dir end
  local pwd = os.getenv("PWD")
  return pwd or "."
end

local function mkdir(path)
  os.execute("mkdir -p '" .. path:gsub("'", "'\\''") .. "' 2>/dev/null")
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end
local function stem(path) return (path:match("([^/]*)$"):gsub("%.lua$", "")) end

--- M.context(path, {quick =, out =, runner =}) -> {quick, name, root, out, files, runner, path}
function M.context(path, opts)
  opts = opts or {}
  local name = stem(path)
  local dir = path:match("^(.*)/[^/]*$")
  local out = opts.out or (dir and (dir .. "/out") or "out")
  return {quick = opts.quick and true or false, name = name, root = module_root(), out = out,
          files = out .. "/" .. name .. "_files", runner = opts.runner and true or false, path = path}
end

local function has_flag(list, flag)
  for _, a in ipairs(list) do if a == flag then return true end end
  return false
end

--- M.setup(...) -> the notebook's context {quick, name, root, out, files, runner}. Under the runner it is
-- the runner's; run as a plain script it reads --quick from the arguments, makes the files folder and
-- installs a global display() that saves images there and prints the rest.
function M.setup(...)
  if active then return active end
  local args = table.pack(...)
  local list = {}
  for i = 1, args.n do if type(args[i]) == "string" then list[#list + 1] = args[i] end end
  if #list == 0 and type(arg) == "table" then list = arg end
  local src = debug.getinfo(2, "S").source
  local path = src:match("^@(.*)$") or (type(arg) == "table" and arg[0]) or "notebook.lua"
  local ctx = M.context(path, {quick = has_flag(list, "--quick") or os.getenv("AVIARY_QUICK") == "1"})
  mkdir(ctx.files)
  _G.display = require("aviary.notebook.display").script(ctx)
  return ctx
end

--- M.run(path, {quick = false, out = dir, echo = false, log = io.stderr}) -> ok, ipynb path, html path
-- runs every code cell in this Lua state, then writes both files (also when a cell fails)
function M.run(path, opts)
  opts = opts or {}
  local runner, render = require "aviary.notebook.runner", require "aviary.notebook.render"
  local ctx = M.context(path, {quick = opts.quick, out = opts.out, runner = true})
  parse.read(path) -- a malformed file fails here, before anything runs
  mkdir(ctx.files)
  active = ctx
  local ok, res = pcall(runner.run, path, ctx, {args = opts.quick and {"--quick"} or {}, echo = opts.echo,
                                                log = opts.log})
  active = nil
  if not ok then error(res, 0) end
  res.name, res.path, res.quick = ctx.name, path, ctx.quick
  -- a walkthrough's page links to the ones before and after it
  if ctx.name:match("^%d%d%d_") then
    local list = M.list(path:match("^(.*)/[^/]*$") or ".")
    for i, f in ipairs(list) do
      if stem(f) == ctx.name then
        res.prev, res.next = list[i - 1] and stem(list[i - 1]), list[i + 1] and stem(list[i + 1])
      end
    end
  end
  local nb, page = render.write(res, ctx.out)
  -- the files folder is for what the notebook saved; an empty one is noise
  os.remove(ctx.files)
  return res.ok, nb, page, res
end

-- ---- the command line ------------------------------------------------------

local USAGE = [[
usage: aviary notebook run FILE.lua [--quick] [--out DIR] [--echo]
       aviary notebook run-all [--quick] [--out DIR] [--dir notebooks] [--keep-going]
       aviary notebook new NAME
  run      runs a notebook cell by cell and writes DIR/NAME.ipynb and DIR/NAME.html
           (DIR: the out/ folder beside the notebook); exits 1 if a cell fails
  run-all  runs notebooks/[0-9][0-9][0-9]_*.lua in order, each in its own process,
           stopping at the first failure unless --keep-going
  new      writes notebooks/NAME.lua from a template
  --quick  small settings for a fast check (NB.quick in the notebook)
  --echo   also print each cell's output while it runs
A notebook also runs as a plain script: aviary notebooks/NAME.lua [--quick].
See docs/notebooks.md.]]

M.TEMPLATE = [==[
--[[md
# %s

What this walkthrough shows, in a sentence or two.
]]

NB = require("aviary.notebook").setup(...)
local av = require "aviary"

--[[md
## A first step

Markdown cells are Lua comments, so this file also runs as a plain script. Top-level `local`s end with
their cell: share values between cells through globals.
]]

x = av.randn(3, 4)
print(x)

-- %%
-- `-- %%` starts a new code cell without markdown in between; a final `return` shows its values
return x:sum()

--[[md
## A figure

`display()` shows plots, images, tables of records, tensors and text.
]]

local plot = require "aviary.plot"
display(plot.lines{series = {{y = {1, 3, 2, 4}, label = "example"}}, title = "A line"}, {caption = "A line plot"})
]==]

local function usage_error(msg) error({usage = msg}, 0) end

local function parse_opts(args, start, known)
  local o, rest = {}, {}
  local i = start
  while i <= #args do
    local a = args[i]
    local key = a:match("^%-%-([%w%-]+)$")
    if key and known[key] == "value" then
      o[key] = args[i + 1]
      if o[key] == nil then usage_error(("--%s needs a value"):format(key)) end
      i = i + 2
    elseif key and known[key] then
      o[key] = true
      i = i + 1
    elseif a:match("^%-") then
      usage_error(("unknown option %s"):format(a))
    else
      rest[#rest + 1] = a
      i = i + 1
    end
  end
  return o, rest
end

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- M.list(dir = "notebooks") -> the walkthroughs NNN_*.lua in dir, sorted
function M.list(dir)
  dir = dir or "notebooks"
  local files = {}
  local p = io.popen("ls -1 " .. sh(dir) .. " 2>/dev/null")
  for f in p:lines() do
    if f:match("^%d%d%d_.*%.lua$") then files[#files + 1] = dir .. "/" .. f end
  end
  p:close()
  table.sort(files)
  return files
end

local function interpreter()
  local i, exe = -1, nil
  while type(arg) == "table" and arg[i] do exe = arg[i]; i = i - 1 end
  return exe or "bin/aviary"
end

local function cmd_run(args)
  local o, files = parse_opts(args, 2, {quick = true, out = "value", echo = true})
  if #files ~= 1 then usage_error("run takes one notebook file") end
  local ok, nb, page = M.run(files[1], {quick = o.quick, out = o.out, echo = o.echo})
  io.stderr:write(("%s %s\n  %s\n  %s\n"):format(ok and "wrote" or "FAILED; wrote", files[1]:match("[^/]*$"), nb, page))
  return ok
end

local function cmd_run_all(args)
  local o, rest = parse_opts(args, 2, {quick = true, out = "value", dir = "value", ["keep-going"] = true, echo = true})
  if #rest > 0 then usage_error("run-all takes no file names (use run)") end
  local files = M.list(o.dir)
  if #files == 0 then
    io.stderr:write(("no notebooks matching %s/[0-9][0-9][0-9]_*.lua\n"):format(o.dir or "notebooks"))
    return true
  end
  local exe, failed = interpreter(), {}
  local clock = os.time()
  for i, f in ipairs(files) do
    io.stderr:write(("== %d/%d %s\n"):format(i, #files, f))
    local cmd = ("%s notebook run %s%s%s%s"):format(sh(exe), sh(f), o.quick and " --quick" or "",
      o.out and (" --out " .. sh(o.out)) or "", o.echo and " --echo" or "")
    if os.execute(cmd) ~= true then
      failed[#failed + 1] = f
      if not o["keep-going"] then break end
    end
  end
  io.stderr:write(("%d of %d notebooks ran%s in %d s%s\n"):format(#files - #failed, #files, o.quick and " (--quick)" or "",
    os.time() - clock, #failed > 0 and ("; failed: " .. table.concat(failed, ", ")) or ""))
  return #failed == 0
end

--- M.new(name, {dir = "notebooks"}) -> the path written (an existing file is never replaced)
function M.new(name, opts)
  local dir = opts and opts.dir or "notebooks"
  local path = name:find("/", 1, true) and name or (dir .. "/" .. name)
  if not path:match("%.lua$") then path = path .. ".lua" end
  if io.open(path, "r") then error(path .. " already exists", 0) end
  local title = stem(path):gsub("^%d+_", ""):gsub("_", " ")
  title = title:sub(1, 1):upper() .. title:sub(2)
  mkdir(dirname(path))
  local f, err = io.open(path, "w")
  if not f then error("cannot write " .. tostring(err), 0) end
  f:write((M.TEMPLATE:gsub("%%s", title)))
  f:close()
  return path
end

--- M.main(args) -> true on success; the `aviary notebook` command
function M.main(args)
  local cmd = args[1]
  if cmd == nil or cmd == "help" or cmd == "-h" or cmd == "--help" then print(USAGE); return true end
  local ok, res = pcall(function()
    if cmd == "run" then return cmd_run(args) end
    if cmd == "run-all" then return cmd_run_all(args) end
    if cmd == "new" then
      if not args[2] or args[3] then usage_error("new takes one name") end
      local path = M.new(args[2])
      print("wrote " .. path .. "; run it with: aviary notebook run " .. path)
      return true
    end
    local near = require("aviary.util").nearest(cmd, {"run", "run-all", "new"})
    usage_error(("unknown command '%s'%s"):format(cmd, near and (" (did you mean '%s'?)"):format(near) or ""))
  end)
  if not ok then
    if type(res) == "table" and res.usage then
      io.stderr:write("aviary notebook: " .. res.usage .. "\n" .. USAGE .. "\n")
    else
      io.stderr:write("aviary notebook: " .. tostring(res) .. "\n")
    end
    return false
  end
  return res
end

return M
