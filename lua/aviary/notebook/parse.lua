--- aviary.notebook.parse: splits a notebook (a .lua file) into cells, and a small Lua lexer shared with
-- the HTML renderer's highlighting.
--
-- A markdown cell starts at a line that is exactly `--[[md` (or `--[=[md`, `--[==[md`, ...) and ends at
-- the line holding the matching `]]` (`]=]`, ...). A line that is exactly `-- %%` ends a code cell.
-- Everything else is code; code cells that hold only blanks and comments are dropped.
local M = {}

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat return then true until while")
    :gmatch("%a+") do KEYWORDS[w] = true end
M.KEYWORDS = KEYWORDS

-- the end of a long bracket [=*[ opened at i (level = number of '='), or nil when unclosed
local function long_end(s, i, level)
  local _, e = s:find("]" .. ("="):rep(level) .. "]", i, true)
  return e
end

--- M.tokens(code) -> list of {kind, text}; kinds: comment, string, number, keyword, name, op, space.
-- Unterminated strings and comments run to the end, so any text lexes.
function M.tokens(s)
  local out, i, n = {}, 1, #s
  local function add(kind, j)
    out[#out + 1] = {kind, s:sub(i, j)}
    i = j + 1
  end
  while i <= n do
    local c = s:sub(i, i)
    if c:match("%s") then
      add("space", (s:find("[^%s]", i) or n + 1) - 1)
    elseif s:sub(i, i + 1) == "--" then
      local eqs = s:match("^%[(=*)%[", i + 2)
      if eqs then
        add("comment", long_end(s, i + 4 + #eqs, #eqs) or n)
      else
        add("comment", (s:find("\n", i, true) or n + 1) - 1)
      end
    elseif c == "[" and s:match("^%[=*%[", i) then
      local eqs = s:match("^%[(=*)%[", i)
      add("string", long_end(s, i + 2 + #eqs, #eqs) or n)
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n do
        local d = s:sub(j, j)
        if d == "\\" then j = j + 2
        elseif d == c or d == "\n" then break
        else j = j + 1 end
      end
      add("string", math.min(j, n))
    elseif c:match("%d") or (c == "." and s:match("^%.%d", i)) then
      local j = s:match("^0[xX][%x%.]*[pP][%+%-]?%d+()", i) or s:match("^0[xX][%x%.]*()", i)
        or s:match("^[%d%.]*[eE][%+%-]?%d+()", i) or s:match("^[%d%.]+()", i)
      add("number", j - 1)
    elseif c:match("[%a_]") then
      local j = s:match("^[%w_]*()", i + 1)
      local word = s:sub(i, j - 1)
      add(KEYWORDS[word] and "keyword" or "name", j - 1)
    else
      local op = s:match("^%.%.%.", i) or s:match("^[=~<>]=", i) or s:match("^::", i) or s:match("^//", i)
        or s:match("^<<", i) or s:match("^>>", i) or s:match("^%.%.", i) or c
      add("op", i + #op - 1)
    end
  end
  return out
end

--- M.is_empty(code) -> true when code holds nothing but blanks and comments
function M.is_empty(code)
  for _, t in ipairs(M.tokens(code)) do
    if t[1] ~= "space" and t[1] ~= "comment" then return false end
  end
  return true
end

local function trim_blank_lines(lines, first)
  local a, b = 1, #lines
  while a <= b and lines[a]:match("^%s*$") do a = a + 1 end
  while b >= a and lines[b]:match("^%s*$") do b = b - 1 end
  return table.move(lines, a, b, 1, {}), first + a - 1
end

--- M.parse(text, name) -> cells: {type = "markdown"|"code", source = text, line = first line,
-- last_line = n}; a code cell's `line` is its first non-blank line. Errors name name:line.
function M.parse(text, name)
  name = name or "notebook"
  local lines = {}
  for line in (text:gsub("\r\n", "\n") .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do
    lines[#lines + 1] = line
  end
  -- a first line "#!..." is skipped by Lua's loadfile, not by load: blank it, keeping the numbering
  if lines[1] and lines[1]:sub(1, 1) == "#" then lines[1] = "" end
  local cells, code, code_start = {}, {}, 1
  local function flush_code(next_start)
    local kept, first = trim_blank_lines(code, code_start)
    local src = table.concat(kept, "\n")
    if #kept > 0 and not M.is_empty(src) then
      cells[#cells + 1] = {type = "code", source = src, line = first, last_line = first + #kept - 1}
    end
    code, code_start = {}, next_start
  end
  local i = 1
  while i <= #lines do
    local line = lines[i]
    local eqs = line:match("^%-%-%[(=*)%[md%s*$")
    if eqs then
      flush_code(i)
      local close = "]" .. eqs .. "]"
      local body, j = {}, i + 1
      while j <= #lines do
        local at = lines[j]:find(close, 1, true)
        if at then
          if not lines[j]:sub(at + #close):match("^%s*$") then
            error(("%s:%d: text after the %s that closes the markdown cell opened at line %d"):format(name, j, close, i), 0)
          end
          local before = lines[j]:sub(1, at - 1)
          if before:match("%S") then body[#body + 1] = before end
          break
        end
        body[#body + 1] = lines[j]
        j = j + 1
      end
      if j > #lines then
        error(("%s:%d: the markdown cell opened here has no closing %s"):format(name, i, close), 0)
      end
      local kept, first = trim_blank_lines(body, i + 1)
      if #kept > 0 then
        cells[#cells + 1] = {type = "markdown", source = table.concat(kept, "\n"), line = first, last_line = j}
      end
      code_start = j + 1
      i = j + 1
    elseif line:match("^%-%- %%%%%s*$") then
      flush_code(i + 1)
      i = i + 1
    else
      code[#code + 1] = line
      i = i + 1
    end
  end
  flush_code(#lines + 1)
  return cells
end

--- M.read(path) -> cells (as M.parse), the file's text
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then error("cannot read " .. tostring(err), 0) end
  local text = f:read("a")
  f:close()
  return M.parse(text, path), text
end

--- M.top_level_locals(code) -> set of names a cell declares with `local` at its outer level (by indentation:
-- a line starting at column 1), for the runner's warning when a later cell reads one as a global
function M.top_level_locals(code)
  local names = {}
  for line in (code .. "\n"):gmatch("(.-)\n") do
    local fname = line:match("^local%s+function%s+([%a_][%w_]*)")
    if fname then
      names[fname] = true
    else
      local list = line:match("^local%s+([%a_][%w_%s,<>]*)")
      if list then
        for n in (list:gsub("<%s*%a+%s*>", "")):gmatch("[%a_][%w_]*") do names[n] = true end
      end
    end
  end
  return names
end

return M
