--- aviary.notebook.runner: runs a notebook's code cells in this Lua state and records what each one shows.
--
-- Every cell is its own chunk (named "@<path>", padded with newlines so error lines are file lines) run in
-- the one global environment: globals carry from cell to cell, a cell's top-level locals do not. While a
-- cell runs, print, io.write, io.stdout, io.stderr and os.execute's output are captured into the cell's
-- outputs; display() adds rich outputs; the values of a final `return` become its result.
local parse = require "aviary.notebook.parse"
local display = require "aviary.notebook.display"

local M = {}

local MAX_STREAM = 200000 -- characters a stream output keeps (head and tail) before eliding the middle

local function clock()
  local ok, av = pcall(require, "aviary")
  if ok and type(av) == "table" and av.clock then return av.clock() end
  return os.time()
end

-- a carriage return redraws its line: keep what was drawn last. Runs of progress lines (a count n/m and an
-- "eta") that start alike keep only their last line, so bars read as their final state.
function M.clean_stream(text)
  local lines = {}
  for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do
    local last = line:match("([^\r]*)\r*$")
    if line:find("\r", 1, true) and last == "" then last = line:match("([^\r]*)\r+[^\r]*$") or "" end
    last = last:gsub("\27%[[%d;]*[A-Za-z]", "")
    lines[#lines + 1] = last
  end
  local out, prev_key = {}, nil
  for _, l in ipairs(lines) do
    local key = l:find("eta", 1, true) and (l:gsub("|[#%-%s]*|", "||"):match("^(.-)%d+/%d+"))
    if key and key == prev_key then out[#out] = l else out[#out + 1] = l end
    prev_key = key
  end
  local s = table.concat(out, "\n")
  if text:sub(-1) ~= "\n" then return s end
  return s .. "\n"
end

local function valid_utf8(s)
  if utf8.len(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    local ok, e = pcall(utf8.offset, s, 2, i)
    local ch = ok and e and s:sub(i, e - 1)
    if ch and utf8.len(ch) then out[#out + 1] = ch; i = e
    else out[#out + 1] = "?"; i = i + 1 end
  end
  return table.concat(out)
end
M.valid_utf8 = valid_utf8

local function elide(s)
  if #s <= MAX_STREAM then return s end
  local head, tail = s:sub(1, MAX_STREAM // 2), s:sub(-MAX_STREAM // 2)
  local dropped = select(2, s:sub(#head + 1, #s - #tail):gsub("\n", ""))
  return head .. ("\n... %d lines left out ...\n"):format(dropped) .. tail
end

-- ---- capture ---------------------------------------------------------------

local Capture = {}
Capture.__index = Capture

function Capture:stream(name, s)
  if s == "" then return end
  local last = self.outputs[#self.outputs]
  if last and last.kind == "stream" and last.name == name then
    last.parts[#last.parts + 1] = s
  else
    self.outputs[#self.outputs + 1] = {kind = "stream", name = name, parts = {s}}
  end
  if self.on_text then self.on_text(s) end
end

function Capture:finish()
  local kept = {}
  for _, o in ipairs(self.outputs) do
    if o.kind == "stream" then
      o.text = valid_utf8(elide(M.clean_stream(table.concat(o.parts))))
      o.parts = nil
      if o.text:match("%S") then kept[#kept + 1] = o end
    else
      kept[#kept + 1] = o
    end
  end
  self.outputs = kept
  return kept
end

-- a stand-in for io.stdout / io.stderr that writes into the current cell
local function proxy(cap_ref, name, real)
  local p = {}
  function p:write(...)
    local cap = cap_ref()
    if not cap then return real:write(...) end
    local parts = table.pack(...)
    for i = 1, parts.n do
      local v = parts[i]
      if type(v) ~= "string" and type(v) ~= "number" then
        error(("bad argument #%d to 'write' (string expected, got %s)"):format(i, type(v)), 2)
      end
      parts[i] = tostring(v)
    end
    cap:stream(name, table.concat(parts, "", 1, parts.n))
    return self
  end
  function p:flush() return self end
  function p:setvbuf() return true end
  function p:close() return true end
  function p:seek() return nil, "cannot seek a captured stream" end
  function p:lines() error("cannot read from captured " .. name, 2) end
  function p:read() return nil, "cannot read from captured " .. name end
  return setmetatable(p, {__name = "FILE*", __tostring = function() return "file (captured " .. name .. ")" end})
end

-- replaces the output functions for the duration of a run; returns the function that puts them back
local function install(cap_ref)
  local saved = {print = print, write = io.write, stdout = io.stdout, stderr = io.stderr, execute = os.execute,
                 exit = os.exit}
  local out, err = proxy(cap_ref, "stdout", saved.stdout), proxy(cap_ref, "stderr", saved.stderr)
  _G.print = function(...)
    local n, parts = select("#", ...), {...}
    for i = 1, n do parts[i] = tostring(parts[i]) end
    out:write(table.concat(parts, "\t", 1, n), "\n")
  end
  io.write = function(...) return out:write(...) end
  io.stdout, io.stderr = out, err
  os.execute = function(cmd, ...)
    local cap = cap_ref()
    if cmd == nil or not cap then return saved.execute(cmd, ...) end
    local o, e = os.tmpname(), os.tmpname()
    local r = table.pack(saved.execute(("( %s ) >%s 2>%s"):format(cmd, o, e)))
    for _, f in ipairs({{o, "stdout"}, {e, "stderr"}}) do
      local h = io.open(f[1], "rb")
      if h then cap:stream(f[2], h:read("a")); h:close() end
      os.remove(f[1])
    end
    return table.unpack(r, 1, r.n)
  end
  -- leaving the process would lose the outputs: os.exit in a cell ends the run as an error instead
  os.exit = function(code)
    if not cap_ref() then return saved.exit(code) end
    error(("os.exit(%s) called: the notebook stops here"):format(code == nil and "" or tostring(code)), 2)
  end
  return function()
    _G.print, io.write, io.stdout, io.stderr, os.execute, os.exit = saved.print, saved.write, saved.stdout,
      saved.stderr, saved.execute, saved.exit
  end
end

-- ---- errors ----------------------------------------------------------------

-- the traceback without the runner's own frames
local function error_output(msg, tb, path)
  local lines = {}
  for l in (tb or ""):gmatch("[^\n]+") do
    if l:find("aviary/notebook/runner.lua", 1, true) or l:find("%[C%]: in function 'xpcall'") then break end
    lines[#lines + 1] = l
  end
  local ename = "LuaError"
  if msg:find("interrupted!", 1, true) then ename = "KeyboardInterrupt" end
  return {kind = "error", ename = ename, evalue = valid_utf8(msg), traceback = valid_utf8(table.concat(lines, "\n")),
          path = path}
end

local function message(e)
  if type(e) == "string" then return e end
  local mt = getmetatable(e)
  if mt and mt.__tostring then return tostring(e) end
  return ("(error object is a %s value)"):format(type(e))
end

-- ---- running ---------------------------------------------------------------

local function isatty(fd)
  return os.execute("test -t " .. fd) == true
end

--- M.run(path, ctx, opts) -> result {cells = parsed cells with .outputs/.count/.seconds, ok, failed_cell,
-- started (os.time), seconds}. ctx is what setup() returns inside the run; opts: args (the chunk's `...`),
-- log (a file for progress lines, io.stderr), echo (copy cell output to log)
function M.run(path, ctx, opts)
  opts = opts or {}
  local cells = parse.read(path)
  local code_cells = {}
  for _, c in ipairs(cells) do if c.type == "code" then code_cells[#code_cells + 1] = c end end
  local log = opts.log or io.stderr
  local tty = opts.tty
  if tty == nil then tty = isatty(2) end
  local current
  local restore = install(function() return current end)
  local saved_display, saved_arg = rawget(_G, "display"), rawget(_G, "arg")
  local args = opts.args or {}
  _G.arg = table.move(args, 1, #args, 1, {[0] = path})
  _G.display = display.make(function(b)
    if not current then error("display: no cell is running", 2) end
    current.outputs[#current.outputs + 1] = {kind = "display", bundle = b}
  end)

  -- warns, once per name, when a cell reads as a global a name an earlier cell declared local
  local declared, warned = {}, {}
  local gmt = getmetatable(_G)
  if gmt == nil then
    setmetatable(_G, {__index = function(_, k)
      local line = declared[k]
      if line and not warned[k] and current then
        warned[k] = true
        local at = debug.getinfo(2, "l")
        log:write(("%s%s:%s: warning: '%s' is nil here: the cell at line %d declared it local, and top-level "
          .. "locals end with their cell (drop the 'local' to share it)\n"):format(tty and "\r\27[K" or "", path,
          at and at.currentline > 0 and at.currentline or "?", k, line))
      end
      return nil
    end})
  end

  local result = {cells = cells, ok = true, started = os.time()}
  local t_start = clock()
  local count = 0
  local last_draw = 0
  for _, cell in ipairs(code_cells) do
    count = count + 1
    cell.count = count
    local label = ("[%d/%d] cell at line %d"):format(count, #code_cells, cell.line)
    if tty then log:write(label .. " \u{2026}"); log:flush() end
    current = setmetatable({outputs = {}}, Capture)
    local t0 = clock()
    if tty or opts.echo then
      current.on_text = function(s)
        if opts.echo then log:write(s); return end
        local now = clock()
        if now - last_draw < 0.2 then return end
        last_draw = now
        local tail = s:gsub("\r", "\n"):match("([^\n]*%S[^\n]*)\n?$")
        if tail then
          tail = tail:gsub("\27%[[%d;]*[A-Za-z]", ""):gsub("\t", " ")
          log:write(("\r%s \u{2026} %.0f s  %s\27[K"):format(label, now - t0, utf8.len(tail) and tail:sub(1, 70) or ""))
          log:flush()
        end
      end
    end
    local chunk, err = load(("\n"):rep(cell.line - 1) .. cell.source, "@" .. path, "t", _G)
    local ok, values
    if not chunk then
      ok = false
      current.outputs[#current.outputs + 1] = error_output(err, nil, path)
      current.outputs[#current.outputs].ename = "SyntaxError"
    else
      local tb
      values = table.pack(xpcall(chunk, function(e)
        local msg = message(e)
        tb = debug.traceback(msg, 2)
        return msg
      end, table.unpack(args)))
      ok = values[1]
      if ok then
        table.remove(values, 1)
        values.n = values.n - 1
        local bok, b = pcall(display.results_bundle, values)
        if not bok then b = {text = "(cannot show the result: " .. tostring(b) .. ")"} end
        if b then current.outputs[#current.outputs + 1] = {kind = "result", bundle = b} end
      else
        current.outputs[#current.outputs + 1] = error_output(values[2], tb, path)
      end
    end
    cell.outputs = current:finish()
    cell.seconds = clock() - t0
    current = nil
    for name in pairs(parse.top_level_locals(cell.source)) do
      if declared[name] == nil and rawget(_G, name) == nil then declared[name] = cell.line end
    end
    log:write((tty and "\r%s \u{2026} %.1f s%s\27[K\n" or "%s \u{2026} %.1f s%s\n"):format(label, cell.seconds,
      ok and "" or "  FAILED"))
    log:flush()
    if not ok then
      result.ok, result.failed_cell = false, cell
      local e = cell.outputs[#cell.outputs]
      log:write(e.traceback ~= "" and e.traceback or e.evalue, "\n")
      break
    end
    collectgarbage()
  end
  result.seconds = clock() - t_start
  restore()
  if gmt == nil then setmetatable(_G, nil) end
  _G.display, _G.arg = saved_display, saved_arg
  return result
end

return M
