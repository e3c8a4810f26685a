--- aviary.json: JSON that round-trips Lua values exactly, for checkpoints,
-- logs and configs. lua-cjson (which aviary uses for speed elsewhere) writes
-- at most 14 significant digits and reads every number as a float; here
-- floats are written with 17 digits (so 0.1 * 3 comes back bit for bit),
-- integers stay integers, and NaN/Infinity are written as Python's json
-- module does.
--   local json = require "aviary.json"
--   local s = json.encode({lr = 0.001, epoch = 3}, {indent = true})
--   local t = json.decode(s)
local json = {}

local escapes = {['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t"}

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function encode_number(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v then return "NaN" end
  if v == math.huge then return "Infinity" end
  if v == -math.huge then return "-Infinity" end
  local s = ("%.17g"):format(v)
  -- the shortest form that reads back exactly
  for p = 1, 16 do
    local t = ("%." .. p .. "g"):format(v)
    if tonumber(t) == v then s = t; break end
  end
  if not s:find("[.eEn]") then s = s .. ".0" end -- keeps it a float when read back
  return s
end

local function is_array(t)
  local n = #t
  if n == 0 then return next(t) == nil and getmetatable(t) == json.array_mt end
  local count = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
    count = count + 1
  end
  return count == n
end

--- json.array_mt: setmetatable({}, json.array_mt) encodes an empty table as []
json.array_mt = {__name = "aviary.json.array"}

local function encode(v, indent, depth, seen)
  local tv = type(v)
  if tv == "nil" then return "null" end
  if tv == "boolean" then return v and "true" or "false" end
  if tv == "number" then return encode_number(v) end
  if tv == "string" then return encode_string(v) end
  if tv ~= "table" then error(("json.encode: cannot encode a %s"):format(tv), 0) end
  if seen[v] then error("json.encode: a table contains itself", 0) end
  seen[v] = true
  local nl, pad, pad_in = "", "", ""
  if indent then
    nl = "\n"
    pad = string.rep("  ", depth)
    pad_in = string.rep("  ", depth + 1)
  end
  local parts = {}
  local out
  if is_array(v) then
    for i = 1, #v do parts[i] = pad_in .. encode(v[i], indent, depth + 1, seen) end
    out = #parts == 0 and "[]" or ("[" .. nl .. table.concat(parts, "," .. nl) .. nl .. pad .. "]")
  else
    local keys = {}
    for k in pairs(v) do
      local tk = type(k)
      if tk ~= "string" and tk ~= "number" then error("json.encode: object keys must be strings or numbers", 0) end
      keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local sep = indent and ": " or ":"
    for i, k in ipairs(keys) do
      parts[i] = pad_in .. encode_string(tostring(k)) .. sep .. encode(v[k], indent, depth + 1, seen)
    end
    out = #parts == 0 and "{}" or ("{" .. nl .. table.concat(parts, "," .. nl) .. nl .. pad .. "}")
  end
  seen[v] = nil
  return out
end

--- json.encode(value, {indent=false}) -> string; object keys are sorted
function json.encode(v, opts)
  local ok, s = pcall(encode, v, opts and opts.indent, 0, {})
  if not ok then error(s, 2) end
  return s
end

-- decoding -----------------------------------------------------------------

local function decode_error(s, i, what)
  local line = 1
  for _ in s:sub(1, i - 1):gmatch("\n") do line = line + 1 end
  error(("json.decode: %s at line %d (byte %d)"):format(what, line, i), 0)
end

local function skip_ws(s, i)
  return s:find("[^ \t\r\n]", i) or #s + 1
end

local decode_value

local function utf8_char(cp) return utf8.char(cp) end

local function decode_string(s, i)
  local out, j = {}, i + 1
  while true do
    local c = s:sub(j, j)
    if c == "" then decode_error(s, i, "unterminated string") end
    if c == '"' then return table.concat(out), j + 1 end
    if c == "\\" then
      local e = s:sub(j + 1, j + 1)
      local map = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}
      if map[e] then
        out[#out + 1] = map[e]; j = j + 2
      elseif e == "u" then
        local hex = s:sub(j + 2, j + 5)
        if not hex:match("^%x%x%x%x$") then decode_error(s, j, "bad \\u escape") end
        local cp = tonumber(hex, 16)
        j = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF and s:sub(j, j + 1) == "\\u" then
          local lo = tonumber(s:sub(j + 2, j + 5), 16)
          if lo and lo >= 0xDC00 and lo <= 0xDFFF then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
            j = j + 6
          end
        end
        out[#out + 1] = utf8_char(cp)
      else
        decode_error(s, j, "bad escape '\\" .. e .. "'")
      end
    else
      local k = s:find('["\\]', j) or (#s + 1)
      out[#out + 1] = s:sub(j, k - 1)
      j = k
    end
  end
end

local literals = {["true"] = true, ["false"] = false, ["NaN"] = 0 / 0, ["Infinity"] = math.huge, ["-Infinity"] = -math.huge}

function decode_value(s, i)
  i = skip_ws(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local t = {}
    i = skip_ws(s, i + 1)
    if s:sub(i, i) == "}" then return t, i + 1 end
    while true do
      i = skip_ws(s, i)
      if s:sub(i, i) ~= '"' then decode_error(s, i, "expected a string key") end
      local k
      k, i = decode_string(s, i)
      i = skip_ws(s, i)
      if s:sub(i, i) ~= ":" then decode_error(s, i, "expected ':'") end
      local v
      v, i = decode_value(s, i + 1)
      t[k] = v
      i = skip_ws(s, i)
      local d = s:sub(i, i)
      if d == "}" then return t, i + 1 end
      if d ~= "," then decode_error(s, i, "expected ',' or '}'") end
      i = i + 1
    end
  elseif c == "[" then
    local t = setmetatable({}, json.array_mt)
    i = skip_ws(s, i + 1)
    if s:sub(i, i) == "]" then return t, i + 1 end
    while true do
      local v
      v, i = decode_value(s, i)
      t[#t + 1] = v
      i = skip_ws(s, i)
      local d = s:sub(i, i)
      if d == "]" then return t, i + 1 end
      if d ~= "," then decode_error(s, i, "expected ',' or ']'") end
      i = i + 1
    end
  elseif c == '"' then
    return decode_string(s, i)
  elseif c == "n" and s:sub(i, i + 3) == "null" then
    return json.null, i + 4
  else
    for lit, v in pairs(literals) do
      if s:sub(i, i + #lit - 1) == lit then return v, i + #lit end
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not num or num == "" or num == "-" then decode_error(s, i, "unexpected '" .. c .. "'") end
    local v
    if num:find("[.eE]") then v = tonumber(num) else v = math.tointeger(tonumber(num)) or tonumber(num) end
    if v == nil then decode_error(s, i, "bad number '" .. num .. "'") end
    return v, i + #num
  end
end

--- json.null: what null decodes to inside arrays (nil elsewhere is dropped from objects)
json.null = setmetatable({}, {__name = "aviary.json.null", __tostring = function() return "null" end})

--- json.decode(string) -> value; integers stay integers; errors name the line
function json.decode(s)
  if type(s) ~= "string" then error("json.decode: expected a string, got " .. type(s), 2) end
  local ok, v, i = pcall(decode_value, s, 1)
  if not ok then error(v, 2) end
  i = skip_ws(s, i)
  if i <= #s then
    local ok2, err = pcall(decode_error, s, i, "trailing characters")
    if not ok2 then error(err, 2) end
  end
  -- objects drop null members, as a Lua table cannot hold nil
  local function strip(t)
    if type(t) ~= "table" or t == json.null then return t end
    for k, x in pairs(t) do
      if x == json.null and getmetatable(t) ~= json.array_mt then t[k] = nil else strip(x) end
    end
    return t
  end
  return strip(v)
end

--- json.read(path) -> value; json.write(path, value, {indent=true}) writes atomically
function json.read(path)
  local f, err = io.open(path, "rb")
  if not f then error(("json.read: cannot open '%s': %s"):format(path, tostring(err)), 2) end
  local s = f:read("a")
  f:close()
  local ok, v = pcall(json.decode, s)
  if not ok then error(("json.read: '%s': %s"):format(path, tostring(v)), 2) end
  return v
end

function json.write(path, v, opts)
  local s = json.encode(v, {indent = not (opts and opts.indent == false)}) .. "\n"
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error(("json.write: cannot write '%s': %s"):format(tmp, tostring(err)), 2) end
  f:write(s)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then os.remove(tmp); error(("json.write: cannot rename to '%s': %s"):format(path, tostring(rerr)), 2) end
end

return json
