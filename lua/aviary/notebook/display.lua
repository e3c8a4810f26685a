--- aviary.notebook.display: turns values into what a notebook shows, and the display() functions of the
-- runner, of a notebook run as a plain script, and of the REPL.
--
-- A bundle is {text = "...", html = "...", markdown = "...", png = bytes, jpeg = bytes, caption =, width =}:
-- the runner stores bundles as Jupyter outputs; the others print the text or save the image.
--   display(x [, {caption =, width =, columns =, image = true|false}])
--   display.html(s), display.markdown(s)
local M = {}

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                                       ["'"] = "&#39;"}))
end

local function is_tensor(x)
  local ok, av = pcall(require, "aviary")
  return ok and type(av) == "table" and av.is_tensor and av.is_tensor(x)
end

local function is_figure(x)
  if type(x) ~= "table" then return false end
  local ok, yes = pcall(function() return type(x.png) == "function" and type(x.axes) == "function" and x._axes ~= nil end)
  return ok and yes
end

local function read_bytes(path)
  local f, err = io.open(path, "rb")
  if not f then error("display: cannot read " .. tostring(err), 0) end
  local s = f:read("a")
  f:close()
  return s
end

-- a tensor that looks like an image: C x H x W or H x W x C with C in {1, 3, 4}, or H x W; uint8, or float
-- in [0, 1]; `force` (opts.image) true takes any 2-d or 3-d tensor, false none
local function image_layout(t, force)
  if force == false then return nil end
  local d = t:dim()
  if d ~= 2 and d ~= 3 then return nil end
  local dtype = t:dtype()
  local u8 = dtype == "uint8"
  if not u8 and not dtype:match("^float") and not dtype:match("^b?float") then return nil end
  if not u8 and t:numel() > 0 and not force then
    local lo, hi = t:min():item(), t:max():item()
    if lo < 0 or hi > 1 then return nil end
  end
  local s = t:size()
  local chan = {[1] = true, [3] = true, [4] = true}
  if d == 2 then
    if force or u8 or (s[1] >= 16 and s[2] >= 16) then return "HW" end
    return nil
  end
  if chan[s[1]] and s[2] > 4 and s[3] > 4 then return "CHW" end
  if chan[s[3]] and s[1] > 4 and s[2] > 4 then return "HWC" end
  return nil
end

--- M.tensor_png(t, layout) -> PNG bytes of an image tensor ("CHW", "HWC" or "HW")
function M.tensor_png(t, layout)
  if layout == "HW" then t = t:unsqueeze(1) elseif layout == "HWC" then t = t:permute(3, 1, 2) end
  t = t:contiguous()
  if t:dtype() ~= "uint8" then t = (t:float() * 255):clamp(0, 255):round():to("uint8") end
  local tmp = os.tmpname()
  local path = tmp .. ".png"
  local ok, err = pcall(require("aviary.image").save, t, path)
  os.remove(tmp)
  if not ok then os.remove(path); error(err, 0) end
  local bytes = read_bytes(path)
  os.remove(path)
  return bytes
end

local function png_size(bytes)
  if bytes:sub(1, 8) ~= "\137PNG\r\n\26\n" then return nil end
  return string.unpack(">I4>I4", bytes, 17)
end
M.png_size = png_size

-- ---- tables ----------------------------------------------------------------

local function plain_table(x)
  if type(x) ~= "table" then return false end
  local mt = getmetatable(x)
  return mt == nil or (type(mt) == "table" and rawget(mt, "__tostring") == nil and rawget(mt, "__index") == nil)
end

local function cell_text(v)
  if math.type(v) == "float" then
    if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
    local a = math.abs(v)
    if a ~= 0 and (a >= 1e6 or a < 1e-3) then return ("%.3e"):format(v) end
    return (("%.4f"):format(v):gsub("(%.%d-)0+$", "%1"):gsub("%.$", ""))
  end
  if is_tensor(v) and v:numel() == 1 then return cell_text(v:item()) end
  if plain_table(v) then return M.dump(v, 1, 60) end
  return tostring(v)
end

--- M.records(x) -> the column names when x is a non-empty array of plain tables with string keys, else nil
function M.records(x, columns)
  if not plain_table(x) or #x == 0 then return nil end
  local seen, cols = {}, {}
  for i = 1, #x do
    local r = x[i]
    if not plain_table(r) or (next(r) ~= nil and #r > 0) then return nil end
    for k in pairs(r) do
      if type(k) ~= "string" then return nil end
      if not seen[k] then seen[k] = true; cols[#cols + 1] = k end
    end
  end
  for k in pairs(x) do
    if math.type(k) ~= "integer" then return nil end
  end
  if columns then return columns end
  -- text columns (names, labels) first, as a reader scans a table; then the rest, each group sorted
  local function texty(k) return type(x[1][k]) == "string" end
  table.sort(cols, function(a, b)
    if texty(a) ~= texty(b) then return texty(a) end
    return a < b
  end)
  return cols
end

local function text_table(rows, cols)
  local width, cells = {}, {}
  for j, c in ipairs(cols) do width[j] = #c end
  for i, r in ipairs(rows) do
    cells[i] = {}
    for j, c in ipairs(cols) do
      local s = r[c] == nil and "" or cell_text(r[c]):gsub("\n", " ")
      cells[i][j] = s
      width[j] = math.max(width[j], utf8.len(s) or #s)
    end
  end
  local function line(vals)
    local parts = {}
    for j, v in ipairs(vals) do parts[j] = v .. (" "):rep(width[j] - (utf8.len(v) or #v)) end
    return (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  local out, rule = {line(cols)}, {}
  for j in ipairs(cols) do rule[j] = ("-"):rep(width[j]) end
  out[2] = line(rule)
  for i = 1, #cells do out[#out + 1] = line(cells[i]) end
  return table.concat(out, "\n")
end

local function is_number(v) return type(v) == "number" or (is_tensor(v) and v:numel() == 1) end

local function html_table(rows, cols)
  -- a column is numeric (right-aligned, header too) when its first value is a number
  local numeric = {}
  for _, c in ipairs(cols) do
    for _, r in ipairs(rows) do
      if r[c] ~= nil then numeric[c] = is_number(r[c]); break end
    end
  end
  local h = {'<table class="records"><thead><tr>'}
  for _, c in ipairs(cols) do h[#h + 1] = (numeric[c] and '<th class="num">' or '<th class="l">') .. esc(c) .. "</th>" end
  h[#h + 1] = "</tr></thead><tbody>"
  for _, r in ipairs(rows) do
    h[#h + 1] = "<tr>"
    for _, c in ipairs(cols) do
      local v = r[c]
      h[#h + 1] = (is_number(v) and '<td class="num">' or '<td class="l">') .. (v == nil and "" or esc(cell_text(v)))
        .. "</td>"
    end
    h[#h + 1] = "</tr>"
  end
  h[#h + 1] = "</tbody></table>"
  return table.concat(h)
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta == tb and (ta == "number" or ta == "string") then return a < b end
  return ta .. tostring(a) < tb .. tostring(b)
end

--- M.dump(value, depth = 3, width = 100) -> a readable, Lua-like rendering of a table: short tables on one
-- line, longer ones one field per line; at most 50 fields a level
function M.dump(v, depth, width)
  depth, width = depth or 3, width or 100
  local seen = {}
  local function go(x, d, indent)
    if type(x) == "string" then return ("%q"):format(#x > 200 and x:sub(1, 197) .. "..." or x):gsub("\\\n", "\\n") end
    if not plain_table(x) then
      local s = tostring(x)
      if is_tensor(x) then s = s:match("\n%s*(%[[^\n]*%])%s*$") or s end
      return s
    end
    if seen[x] then return "{<cycle>}" end
    if d > depth then return "{...}" end
    seen[x] = true
    local items, n, keys = {}, #x, {}
    for i = 1, math.min(n, 50) do items[#items + 1] = go(x[i], d + 1, indent .. "  ") end
    if n > 50 then items[#items + 1] = ("... (%d more)"):format(n - 50) end
    for k in pairs(x) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, key_order)
    for i, k in ipairs(keys) do
      if i > 50 then items[#items + 1] = ("... (%d more)"):format(#keys - 50); break end
      local name = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. go(k, depth + 1, "") .. "]"
      items[#items + 1] = name .. " = " .. go(x[k], d + 1, indent .. "  ")
    end
    seen[x] = nil
    if #items == 0 then return "{}" end
    local one = "{" .. table.concat(items, ", ") .. "}"
    if #one + #indent <= width and not one:find("\n") then return one end
    return "{\n" .. indent .. "  " .. table.concat(items, ",\n" .. indent .. "  ") .. "\n" .. indent .. "}"
  end
  return go(v, 1, "")
end

-- ---- values to bundles -----------------------------------------------------

local function with_opts(b, opts)
  b.caption, b.width = opts.caption, opts.width
  return b
end

--- M.bundle(x, opts) -> the bundle that shows x (see the top of this file)
function M.bundle(x, opts)
  opts = opts or {}
  if is_figure(x) then
    local png = x:png()
    return with_opts({png = png, text = opts.caption or ("<figure %dx%d>"):format(png_size(png))}, opts)
  end
  if type(x) == "string" then
    local ext = x:lower():match("%.(%a+)$")
    if (ext == "png" or ext == "jpg" or ext == "jpeg") and not x:find("\n") then
      local bytes = read_bytes(x)
      local b = with_opts({text = opts.caption or x}, opts)
      if bytes:sub(1, 8) == "\137PNG\r\n\26\n" then b.png = bytes
      elseif bytes:sub(1, 3) == "\255\216\255" then b.jpeg = bytes
      else error("display: " .. x .. " is neither a PNG nor a JPEG file", 0) end
      return b
    end
    return {text = x}
  end
  if is_tensor(x) then
    local layout = image_layout(x, opts.image)
    if layout then
      return with_opts({png = M.tensor_png(x, layout), text = opts.caption or ("<image %s>"):format(
        table.concat(x:size(), "x"))}, opts)
    end
    return {text = tostring(x)}
  end
  local cols = M.records(x, opts.columns)
  if cols then
    local b = {text = text_table(x, cols), html = html_table(x, cols)}
    if opts.caption then b.html = b.html .. '<p class="caption">' .. esc(opts.caption) .. "</p>" end
    return b
  end
  if plain_table(x) then return {text = M.dump(x)} end
  return {text = tostring(x)}
end

--- M.results_bundle(n, values) -> the bundle of a cell's returned values (nil when there are none)
function M.results_bundle(t)
  if t.n == 0 or (t.n == 1 and t[1] == nil) then return nil end
  if t.n == 1 then return M.bundle(t[1]) end
  local parts = {}
  for i = 1, t.n do
    local v = t[i]
    parts[i] = plain_table(v) and M.dump(v) or tostring(v)
  end
  return {text = table.concat(parts, "\t")}
end

-- ---- display functions -----------------------------------------------------

--- M.make(show) -> a display function calling show(bundle) for each value; display.html(s) and
-- display.markdown(s) show raw HTML and markdown
function M.make(show)
  local d = {}
  function d.html(s, opts)
    return show(with_opts({html = tostring(s), text = (tostring(s):gsub("<[^>]*>", ""))}, opts or {}))
  end
  function d.markdown(s, opts)
    return show(with_opts({markdown = tostring(s), text = tostring(s)}, opts or {}))
  end
  return setmetatable(d, {__call = function(_, x, opts)
    if opts ~= nil and type(opts) ~= "table" then error("display: options must be a table, got " .. type(opts), 2) end
    return show(M.bundle(x, opts))
  end})
end

local function write_file(path, bytes)
  local f, err = io.open(path, "wb")
  if not f then error("display: cannot write " .. tostring(err), 0) end
  f:write(bytes)
  f:close()
  return path
end

--- M.script(ctx) -> the display of a notebook run as a plain script: images go to ctx.files as 1.png, 2.png,
-- ... (a line "[display] path" says where), everything else is printed
function M.script(ctx)
  local count = 0
  return M.make(function(b)
    local bytes = b.png or b.jpeg
    if bytes then
      count = count + 1
      local path = write_file(("%s/%d.%s"):format(ctx.files, count, b.png and "png" or "jpg"), bytes)
      print("[display] " .. path .. (b.caption and ("  " .. b.caption) or ""))
    else
      print(b.text)
    end
  end)
end

-- ---- the terminal ----------------------------------------------------------

local function b64(s) return require("aviary.report").base64(s) end

--- M.terminal_protocol(env) -> "kitty", "iterm" or nil, from the environment (env: a getenv function)
function M.terminal_protocol(getenv)
  getenv = getenv or os.getenv
  if getenv("TERM") == "xterm-kitty" or getenv("KITTY_WINDOW_ID") then return "kitty" end
  local prog = getenv("TERM_PROGRAM")
  if prog == "iTerm.app" or prog == "WezTerm" then return "iterm" end
  return nil
end

--- M.terminal_image(png, protocol) -> the escape sequence that draws the PNG inline
function M.terminal_image(png, protocol)
  local data = b64(png)
  if protocol == "iterm" then
    return ("\27]1337;File=inline=1;size=%d;preserveAspectRatio=1:%s\7\n"):format(#png, data)
  end
  -- kitty: PNG (f=100), transmitted and shown (a=T), in chunks of at most 4096 base64 characters
  local out, n = {}, #data
  for i = 1, n, 4096 do
    local more = i + 4096 <= n and 1 or 0
    out[#out + 1] = (i == 1 and "\27_Ga=T,f=100,m=%d;%s\27\\" or "\27_Gm=%d;%s\27\\"):format(more, data:sub(i, i + 4095))
  end
  return table.concat(out) .. "\n"
end

--- M.terminal() -> the REPL's display: images inline where the terminal draws them (kitty, iTerm2, WezTerm),
-- else saved to a temporary PNG whose path is printed; other values printed
function M.terminal()
  local tty
  return M.make(function(b)
    local bytes = b.png or b.jpeg
    if not bytes then print(b.text); return end
    if b.jpeg then
      local image = require "aviary.image"
      bytes = M.tensor_png(image.decode(b.jpeg), "CHW")
    end
    local proto = M.terminal_protocol()
    if tty == nil then tty = os.execute("test -t 1") == true end
    if proto and tty then
      io.stdout:write(M.terminal_image(bytes, proto))
      if b.caption then print(b.caption) end
      io.stdout:flush()
    else
      local tmp = os.tmpname()
      local path = tmp .. ".png"
      write_file(path, bytes)
      os.remove(tmp)
      print("[display] " .. path .. (b.caption and ("  " .. b.caption) or ""))
    end
  end)
end

return M
