--- aviary.progress: a progress bar with rate and ETA on stderr.
--
--   local progress = require "aviary.progress"
--   local bar = progress.bar(total, {label = "images"})
--   for i = 1, total do ...; bar:update(1) end   -- or bar:update(nil, done) for an absolute count
--   bar:finish()
--
-- On a terminal the bar redraws in place (at most 10 times a second); when
-- stderr is not a terminal (a log file, CI) it prints a plain line every 10%
-- instead. Options: label, unit ("it"), stream (io.stderr), tty (override the
-- detection), width (bar characters, 30), quiet (draw nothing).
local M = {}

local function now()
  local ok, av = pcall(require, "aviary")
  if ok and av.clock then return av.clock() end
  return os.clock()
end

local tty_cache
local function stderr_is_tty()
  if tty_cache == nil then
    tty_cache = os.execute("test -t 2") == true
  end
  return tty_cache
end

local function fmt_time(s)
  if s ~= s or s == math.huge then return "--:--" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return ("%d:%02d:%02d"):format(s // 3600, s % 3600 // 60, s % 60) end
  return ("%02d:%02d"):format(s // 60, s % 60)
end
M.format_time = fmt_time

local Bar = {}
Bar.__index = Bar

function M.bar(total, opts)
  opts = opts or {}
  assert(type(total) == "number" and total >= 0, "progress.bar: total must be a non-negative number")
  local self = setmetatable({
    total = total, done = 0, label = opts.label or "", unit = opts.unit or "it",
    stream = opts.stream or io.stderr, width = opts.width or 30, quiet = opts.quiet,
    start = now(), last_draw = -1, last_decile = -1,
  }, Bar)
  if opts.tty ~= nil then self.tty = opts.tty else self.tty = stderr_is_tty() end
  return self
end

--- the line the bar shows now (without the carriage return)
function Bar:line()
  local el = now() - self.start
  local rate = el > 0 and self.done / el or 0
  local frac = self.total > 0 and math.min(self.done / self.total, 1) or 1
  local eta = rate > 0 and (self.total - self.done) / rate or math.huge
  local fill = math.floor(frac * self.width + 0.5)
  return ("%s%s |%s%s| %d/%d %5.1f%% %.1f %s/s elapsed %s eta %s"):format(
    self.label, self.label ~= "" and " " or "", ("#"):rep(fill), ("-"):rep(self.width - fill),
    self.done, self.total, frac * 100, rate, self.unit, fmt_time(el), fmt_time(eta))
end

--- advances by n (default 1), or sets the count to `done` when given
function Bar:update(n, done)
  self.done = done or (self.done + (n or 1))
  if self.quiet then return self end
  if self.tty then
    local t = now()
    if t - self.last_draw >= 0.1 or self.done >= self.total then
      self.last_draw = t
      self.stream:write("\r" .. self:line() .. "\27[K")
      self.stream:flush()
    end
  else
    local dec = self.total > 0 and math.floor(self.done / self.total * 10) or 10
    if dec > self.last_decile then
      self.last_decile = dec
      self.stream:write(self:line() .. "\n")
    end
  end
  return self
end

--- draws the final state and ends the line; returns the elapsed seconds
function Bar:finish()
  local el = now() - self.start
  if not self.quiet then
    if self.tty then
      self.stream:write("\r" .. self:line() .. "\27[K\n")
    elseif self.last_decile < 10 then
      self.stream:write(self:line() .. "\n")
    end
    self.stream:flush()
  end
  self.finished = true
  return el
end

return M
