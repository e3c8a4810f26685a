--- aviary.util: small helpers shared by the Lua modules.
local util = {}

--- util.distance(a, b) -> Levenshtein edit distance between two strings
function util.distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = {[0] = i}
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- util.nearest(name, candidates) -> the candidate closest to name, for
-- "did you mean" messages; candidates is a list (its order breaks ties) or
-- a set {name = true} (sorted first, so the choice is deterministic)
function util.nearest(name, candidates)
  local list = candidates
  if #candidates == 0 and next(candidates) ~= nil then
    list = {}
    for k in pairs(candidates) do list[#list + 1] = k end
    table.sort(list)
  end
  name = tostring(name)
  local best, bd = nil, math.huge
  for _, k in ipairs(list) do
    local d = util.distance(name, k)
    if d < bd then best, bd = k, d end
  end
  return best
end

--- util.check_opts(who, opts, valid) -> opts ({} for nil): an option name outside the list `valid`
-- is an error naming the function, the nearest valid name and all of them (raised at the caller's caller)
function util.check_opts(who, opts, valid)
  opts = opts or {}
  if type(opts) ~= "table" then error(who .. ": options must be a table", 3) end
  local set = {}
  for _, v in ipairs(valid) do set[v] = true end
  for k in pairs(opts) do
    if not set[k] then
      local sorted = {table.unpack(valid)}
      table.sort(sorted)
      error(("%s: unknown option '%s' (did you mean '%s'?); valid: %s"):format(who, tostring(k),
        util.nearest(tostring(k), sorted), table.concat(sorted, ", ")), 3)
    end
  end
  return opts
end

return util
