--- aviary.checkpoint: one file holding everything a run needs to resume
-- exactly: model weights and buffers, optimizer state, scheduler state, epoch
-- and step, the random generator's state and free-form metadata.
--   local checkpoint = require "aviary.checkpoint"
--   checkpoint.save("models/run/last.ckpt", {model = net, optimizer = opt, scheduler = sched,
--                                            epoch = 3, step = 1200, metadata = {val_acc = 0.81}})
--   local info = checkpoint.load("models/run/last.ckpt", {model = net, optimizer = opt, scheduler = sched})
--   -- info.epoch, info.step, info.metadata
-- The file is safetensors: tensors are named "model.<name>" (PyTorch's
-- names), "optimizer.<param index>.<key>" and "rng"; everything else is JSON
-- in the header's metadata under "aviary.checkpoint". It is written to a
-- temporary name, flushed and renamed, so an interrupted save never leaves a
-- half-written checkpoint behind.
local av = require "aviary"
local json = require "aviary.json"

local checkpoint = {}
local FORMAT, VERSION = "aviary.checkpoint", 1

local function check_opts(who, opts, valid)
  if type(opts) ~= "table" then error(who .. ": expected an options table, got " .. type(opts), 3) end
  local names = {}
  for k in pairs(valid) do names[#names + 1] = k end
  table.sort(names)
  for k in pairs(opts) do
    if not valid[k] then
      local nn = require "aviary.nn"
      error(("%s: unknown field '%s' (did you mean '%s'?)"):format(who, tostring(k), nn._nearest(tostring(k), names)), 3)
    end
  end
end

local function type_of(obj)
  return obj and (rawget(obj, "_who") or obj._who or (getmetatable(obj) and getmetatable(obj).__name)) or nil
end

--- checkpoint.save(path, {model=, optimizer=, scheduler=, epoch=, step=, metadata={}})
-- writes one atomic file; every field is optional except model
function checkpoint.save(path, s)
  local who = "checkpoint.save"
  if type(path) ~= "string" then error(who .. ": expected a file path, got " .. type(path), 2) end
  check_opts(who, s, {model = true, optimizer = true, scheduler = true, epoch = true, step = true, metadata = true})
  if not s.model then error(who .. ": 'model' is required", 2) end
  local tensors = {}
  local sd = s.model:state_dict()
  for k, t in pairs(sd) do tensors["model." .. k] = t end
  local info = {format = FORMAT, version = VERSION, producer = "aviary " .. av._VERSION,
                created = os.date("!%Y-%m-%dT%H:%M:%SZ"),
                epoch = s.epoch, step = s.step, metadata = s.metadata or {},
                model = {keys = s.model:state_dict_keys(), arch = rawget(s.model, "arch"), type = s.model:type_name()},
                threads = av.get_num_threads()}
  if s.optimizer then
    local osd = s.optimizer:state_dict()
    local state = {}
    for idx, st in pairs(osd.state) do
      local scalars = {}
      for k, v in pairs(st) do
        if av.is_tensor(v) then tensors[("optimizer.%d.%s"):format(idx, k)] = v else scalars[k] = v end
      end
      state[tostring(idx)] = scalars
    end
    info.optimizer = {type = type_of(s.optimizer), param_groups = osd.param_groups, state = state}
  end
  if s.scheduler then
    info.scheduler = {type = type_of(s.scheduler), state = s.scheduler:state_dict()}
  end
  tensors.rng = av.get_rng_state()
  local ok, err = pcall(json.encode, info)
  if not ok then error(who .. ": metadata cannot be written as JSON: " .. tostring(err), 2) end
  local ok2, err2 = pcall(av.save, path, tensors, {[FORMAT] = err})
  if not ok2 then error(("%s: cannot write '%s': %s"):format(who, path, tostring(err2)), 2) end
end

--- checkpoint.read(path) -> info, tensors: the checkpoint's contents, applied to nothing
function checkpoint.read(path)
  if type(path) ~= "string" then error("checkpoint.read: expected a file path, got " .. type(path), 2) end
  local f = io.open(path, "rb")
  if not f then error(("checkpoint: cannot open '%s' (check the path)"):format(path), 2) end
  f:close()
  local ok, tensors, meta = pcall(av.load, path)
  if not ok then error(("checkpoint: '%s' is damaged or not a checkpoint: %s"):format(path, tostring(tensors)), 2) end
  local raw = meta and meta[FORMAT]
  if not raw then
    error(("checkpoint: '%s' is a safetensors file without checkpoint metadata (weights only? load them with model:load)"):format(path), 2)
  end
  local ok2, info = pcall(json.decode, raw)
  if not ok2 or type(info) ~= "table" or info.format ~= FORMAT then
    error(("checkpoint: '%s' has unreadable checkpoint metadata: %s"):format(path, tostring(info)), 2)
  end
  if (info.version or 0) > VERSION then
    error(("checkpoint: '%s' has format version %s, newer than this aviary reads (%d); update aviary"):format(path,
      tostring(info.version), VERSION), 2)
  end
  return info, tensors
end

--- checkpoint.load(path, {model=, optimizer=, scheduler=, restore_rng=true, strict=true})
-- -> {epoch=, step=, metadata=, info=}; restores what it is given
function checkpoint.load(path, s)
  local who = "checkpoint.load"
  s = s or {}
  check_opts(who, s, {model = true, optimizer = true, scheduler = true, restore_rng = true, strict = true})
  local info, tensors = checkpoint.read(path)
  local function fail(msg) error(("%s '%s': %s"):format(who, path, msg), 3) end
  if s.model then
    local sd = {}
    for k, t in pairs(tensors) do
      local name = k:match("^model%.(.*)$")
      if name then sd[name] = t end
    end
    local ok, err = pcall(s.model.load_state_dict, s.model, sd, {strict = s.strict ~= false})
    if not ok then fail(tostring(err)) end
  end
  if s.optimizer then
    if not info.optimizer then fail("it holds no optimizer state") end
    local mine = type_of(s.optimizer)
    if info.optimizer.type and mine and info.optimizer.type ~= mine then
      fail(("it holds %s state, but the optimizer is %s"):format(info.optimizer.type, mine))
    end
    local state = {}
    for idx, scalars in pairs(info.optimizer.state or {}) do
      local i = math.tointeger(tonumber(idx))
      local st = {}
      for k, v in pairs(scalars) do st[k] = v end
      state[i] = st
    end
    for k, t in pairs(tensors) do
      local idx, key = k:match("^optimizer%.(%d+)%.(.+)$")
      if idx then
        local i = math.tointeger(tonumber(idx))
        state[i] = state[i] or {}
        state[i][key] = t
      end
    end
    local ok, err = pcall(s.optimizer.load_state_dict, s.optimizer, {state = state, param_groups = info.optimizer.param_groups})
    if not ok then fail(tostring(err)) end
  end
  if s.scheduler then
    if not info.scheduler then fail("it holds no scheduler state") end
    local mine = type_of(s.scheduler)
    if info.scheduler.type and mine and info.scheduler.type ~= mine then
      fail(("it holds %s state, but the scheduler is %s"):format(info.scheduler.type, mine))
    end
    local ok, err = pcall(s.scheduler.load_state_dict, s.scheduler, info.scheduler.state)
    if not ok then fail(tostring(err)) end
  end
  if s.restore_rng ~= false and tensors.rng then av.set_rng_state(tensors.rng) end
  return {epoch = info.epoch, step = info.step, metadata = info.metadata, info = info}
end

return checkpoint
