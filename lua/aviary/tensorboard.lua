--- aviary.tensorboard: TensorBoard event files written from Lua.
--
--   local tb = require "aviary.tensorboard"
--   local w = tb.SummaryWriter("models/run1/tb")
--   w:add_scalar("train/loss", 0.7, 100)
--   w:add_histogram("weights/fc.weight", net.fc.weight, 3)
--   w:add_image("samples/0", png_bytes, 224, 224, 3)
--   w:close()
--
-- An event file is a sequence of TFRecords: an 8-byte little-endian length,
-- the masked CRC-32C of those 8 bytes, the data, the masked CRC-32C of the
-- data. Each record is a serialized tensorflow.Event protobuf, encoded here
-- by hand for the few fields used: Event{wall_time=1 double, step=2 int64,
-- file_version=3 string, summary=5}, Summary{value=1 repeated},
-- Summary.Value{tag=1, simple_value=2 float, image=4, histo=5},
-- Summary.Image{height=1, width=2, colorspace=3, encoded_image_string=4},
-- HistogramProto{min=1, max=2, num=3, sum=4, sum_squares=5,
-- bucket_limit=6 packed double, bucket=7 packed double}. The first record
-- holds file_version "brain.Event:2", which TensorBoard requires.
local tb = {}

-- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 -------------------------
local CRC_TABLE = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = (c >> 1) ~ 0x82F63B78 else c = c >> 1 end
  end
  CRC_TABLE[i] = c
end

--- tb.crc32c(s) -> the CRC-32C of string s (an integer in 0..2^32-1)
function tb.crc32c(s)
  local crc = 0xFFFFFFFF
  local byte, T = string.byte, CRC_TABLE
  local n = #s
  local i = 1
  while i <= n - 7 do
    local a, b, c, d, e, f, g, h = byte(s, i, i + 7)
    crc = T[(crc ~ a) & 0xFF] ~ (crc >> 8)
    crc = T[(crc ~ b) & 0xFF] ~ (crc >> 8)
    crc = T[(crc ~ c) & 0xFF] ~ (crc >> 8)
    crc = T[(crc ~ d) & 0xFF] ~ (crc >> 8)
    crc = T[(crc ~ e) & 0xFF] ~ (crc >> 8)
    crc = T[(crc ~ f) & 0xFF] ~ (crc >> 8)
    crc = T[(crc ~ g) & 0xFF] ~ (crc >> 8)
    crc = T[(crc ~ h) & 0xFF] ~ (crc >> 8)
    i = i + 8
  end
  for j = i, n do crc = T[(crc ~ byte(s, j)) & 0xFF] ~ (crc >> 8) end
  return crc ~ 0xFFFFFFFF
end

--- tb.masked_crc32c(s): TFRecord's rotate-and-add mask of the CRC
function tb.masked_crc32c(s)
  local c = tb.crc32c(s)
  return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xFFFFFFFF
end

--- tb.record(data) -> data framed as one TFRecord
function tb.record(data)
  local len = string.pack("<I8", #data)
  return len .. string.pack("<I4", tb.masked_crc32c(len)) .. data .. string.pack("<I4", tb.masked_crc32c(data))
end

-- protobuf wire format ----------------------------------------------------------
local function varint(v)
  -- v is a Lua integer; negative numbers are their 64-bit two's complement (10 bytes)
  local out = {}
  repeat
    local b = v & 0x7F
    v = v >> 7                        -- logical shift: terminates for negative v too
    if v ~= 0 then b = b | 0x80 end
    out[#out + 1] = string.char(b)
  until v == 0
  return table.concat(out)
end
local function key(field, wire) return varint((field << 3) | wire) end
local function f_varint(field, v) return key(field, 0) .. varint(v) end
local function f_double(field, v) return key(field, 1) .. string.pack("<d", v) end
local function f_float(field, v) return key(field, 5) .. string.pack("<f", v) end
local function f_bytes(field, s) return key(field, 2) .. varint(#s) .. s end
local function f_packed_doubles(field, list)
  local parts = {}
  for i, v in ipairs(list) do parts[i] = string.pack("<d", v) end
  return f_bytes(field, table.concat(parts))
end
tb._pb = {varint = varint, f_varint = f_varint, f_double = f_double, f_float = f_float, f_bytes = f_bytes}

local function event(wall_time, step, body)
  local s = f_double(1, wall_time)
  if step and step ~= 0 then s = s .. f_varint(2, math.tointeger(step) or error("tensorboard: step must be an integer")) end
  return s .. body
end
local function summary(value_body) return f_bytes(5, f_bytes(1, value_body)) end

-- seconds since the epoch with sub-second resolution: os.time() has whole
-- seconds only, so the monotonic av.clock() adds the fraction since load
local have_av, av_mod = pcall(require, "aviary")
local base_wall, base_clock = os.time(), have_av and av_mod.clock and av_mod.clock() or nil
local function wall_time()
  if base_clock then return base_wall + (av_mod.clock() - base_clock) end
  return os.time() + 0.0
end

local function hostname()
  local f = io.open("/proc/sys/kernel/hostname") or io.open("/etc/hostname")
  local h = f and f:read("l")
  if f then f:close() end
  h = h and h:gsub("[^%w%.%-_]", "") or ""
  return h ~= "" and h or "localhost"
end

-- SummaryWriter ---------------------------------------------------------------------
local Writer = {}
Writer.__index = Writer
Writer.__name = "aviary.tensorboard.SummaryWriter"

--- tb.SummaryWriter(logdir, {flush_secs = 10, filename_suffix = ""}) -> writer
-- creates logdir and a new events.out.tfevents.<time>.<host> file in it
function tb.SummaryWriter(logdir, opts)
  if type(logdir) ~= "string" or logdir == "" then error("tensorboard.SummaryWriter: expected a log directory", 2) end
  opts = opts or {}
  os.execute("mkdir -p '" .. logdir:gsub("'", "'\\''") .. "'")
  local base = ("%s/events.out.tfevents.%d.%s%s"):format(logdir, os.time(), hostname(), opts.filename_suffix or "")
  local path, n = base, 0
  while true do                       -- two writers in the same second get distinct files
    local f = io.open(path, "rb")
    if not f then break end
    f:close()
    n = n + 1
    path = base .. "." .. n
  end
  local f, err = io.open(path, "wb")
  if not f then error(("tensorboard.SummaryWriter: cannot create '%s': %s"):format(path, tostring(err)), 2) end
  local self = setmetatable({logdir = logdir, path = path, file = f, flush_secs = opts.flush_secs or 10,
                             last_flush = os.time()}, Writer)
  self:_write(event(wall_time(), 0, f_bytes(3, "brain.Event:2")))
  self:flush()
  return self
end

function Writer:_write(data)
  if not self.file then error("tensorboard.SummaryWriter: the writer is closed", 3) end
  self.file:write(tb.record(data))
  if os.time() - self.last_flush >= self.flush_secs then self:flush() end
end

local function check_tag(who, tag)
  if type(tag) ~= "string" then error(who .. ": tag must be a string", 3) end
end
local function check_step(who, step)
  if step ~= nil and math.type(step) ~= "integer" then
    local s = math.tointeger(step)
    if not s then error(who .. ": step must be an integer", 3) end
    return s
  end
  return step or 0
end

--- w:add_scalar(tag, value, step [, wall_time])
function Writer:add_scalar(tag, value, step, wt)
  local who = "SummaryWriter:add_scalar"
  check_tag(who, tag)
  if type(value) ~= "number" then
    if type(value) == "userdata" then value = value:item() else error(who .. ": value must be a number", 2) end
  end
  step = check_step(who, step)
  self:_write(event(wt or wall_time(), step, summary(f_bytes(1, tag) .. f_float(2, value))))
end

--- tb.histogram(values, bins) -> HistogramProto fields {min, max, num, sum, sum_squares, bucket_limit, bucket}
-- values: a tensor (any shape) or a list of numbers; `bins` equal-width buckets
-- between min and max (TensorBoard draws from bucket upper limits).
function tb.histogram(values, bins)
  bins = bins or 30
  local av = require "aviary"
  local x
  if av.is_tensor(values) then x = values:detach():double():reshape(-1)
  else x = av.tensor(values, {dtype = "float64"}):reshape(-1) end
  local n = x:numel()
  if n == 0 then return {min = 0, max = 0, num = 0, sum = 0, sum_squares = 0, bucket_limit = {}, bucket = {}} end
  -- non-finite values would poison the buckets; they are left out
  local finite = x:isfinite()
  if finite:sum():item() < n then x = x:masked_select(finite) end
  n = x:numel()
  if n == 0 then return {min = 0, max = 0, num = 0, sum = 0, sum_squares = 0, bucket_limit = {}, bucket = {}} end
  local lo, hi = x:min():item(), x:max():item()
  local h = {min = lo, max = hi, num = n, sum = x:sum():item(), sum_squares = (x * x):sum():item()}
  if hi <= lo then
    h.bucket_limit, h.bucket = {hi}, {n}
    return h
  end
  local width = (hi - lo) / bins
  local idx = ((x - lo) / width):floor():clamp(0, bins - 1):long() + 1
  local counts = av.zeros(bins, {dtype = "float64"}):scatter(1, idx, av.ones(n, {dtype = "float64"}), {reduce = "add"})
  h.bucket = counts:tolist()
  h.bucket_limit = {}
  for b = 1, bins do h.bucket_limit[b] = (b == bins) and hi or lo + width * b end
  return h
end

--- w:add_histogram(tag, values, step [, {bins = 30}]): values a tensor or a list of numbers
function Writer:add_histogram(tag, values, step, opts)
  local who = "SummaryWriter:add_histogram"
  check_tag(who, tag)
  step = check_step(who, step)
  local h = tb.histogram(values, opts and opts.bins)
  local body = f_double(1, h.min) .. f_double(2, h.max) .. f_double(3, h.num) .. f_double(4, h.sum)
    .. f_double(5, h.sum_squares) .. f_packed_doubles(6, h.bucket_limit) .. f_packed_doubles(7, h.bucket)
  self:_write(event(wall_time(), step, summary(f_bytes(1, tag) .. f_bytes(5, body))))
end

--- w:add_image(tag, png_bytes, height, width, step [, {colorspace = 3}]): an encoded PNG (or JPEG)
function Writer:add_image(tag, png, height, width, step, opts)
  local who = "SummaryWriter:add_image"
  check_tag(who, tag)
  if type(png) ~= "string" then error(who .. ": expected the encoded image as a string", 2) end
  if math.type(height) ~= "integer" or math.type(width) ~= "integer" then
    error(who .. ": height and width must be integers", 2)
  end
  step = check_step(who, step)
  local img = f_varint(1, height) .. f_varint(2, width) .. f_varint(3, (opts and opts.colorspace) or 3) .. f_bytes(4, png)
  self:_write(event(wall_time(), step, summary(f_bytes(1, tag) .. f_bytes(4, img))))
end

--- w:flush(): pushes buffered records to the file
function Writer:flush()
  if self.file then self.file:flush() end
  self.last_flush = os.time()
end

--- w:close(): flushes and closes (also on __close / garbage collection)
function Writer:close()
  if self.file then
    self.file:flush()
    self.file:close()
    self.file = nil
  end
end
Writer.__close = Writer.close
Writer.__gc = Writer.close

return tb
