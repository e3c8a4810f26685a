--- aviary.train: a training loop with Ignite-like events and handlers.
--
--   local train = require "aviary.train"
--   local t = train.Trainer({model = net, optimizer = opt, scheduler = sched, criterion = nn.CrossEntropyLoss(),
--                            train_loader = tl, val_loader = vl, max_epochs = 30, grad_clip = 5})
--   t:attach(train.handlers.checkpoint_last("models/run1"))
--   t:attach(train.handlers.checkpoint_best("models/run1", {metric = "val_accuracy", keep = 1}))
--   t:attach(train.handlers.early_stopping({patience = 5, metric = "val_accuracy", mode = "max"}))
--   t:attach(train.handlers.nan_guard())
--   t:on("epoch_completed", function(trainer, state) print(state.epoch, state.metrics.train.loss) end)
--   t:run()
--
-- A loader is anything with :iter() (an iterator over batches {input = N x C x H x W float,
-- target = N int64 1-based, path = {...}}) and :size() (batches per epoch).
-- Events, in order: started, then per epoch epoch_started, (iteration_started,
-- iteration_completed)*, epoch_completed, validation_completed (every epoch;
-- after the validation pass when there is a val_loader), and finally completed;
-- exception when run() fails (the error is raised again after the handlers).
-- See docs/training.md.
local av = require "aviary"
local metrics = require "aviary.metrics"
local checkpoint = require "aviary.checkpoint"
local json = require "aviary.json"

local train = {handlers = {}}

local EVENTS = {"started", "epoch_started", "iteration_started", "iteration_completed", "epoch_completed",
                "validation_completed", "completed", "exception"}
local IS_EVENT = {}
for _, e in ipairs(EVENTS) do IS_EVENT[e] = true end
train.EVENTS = EVENTS

local function nearest(name, list)
  local ok, util = pcall(require, "aviary.util")
  return ok and util.nearest(name, list) or list[1]
end

local function check_opts(who, opts, valid, level)
  opts = opts or {}
  if type(opts) ~= "table" then error(who .. ": expected an options table", level + 1) end
  local names = {}
  for k in pairs(valid) do names[#names + 1] = k end
  table.sort(names)
  for k in pairs(opts) do
    if valid[k] == nil then
      error(("%s: unknown option '%s' (did you mean '%s'?)"):format(who, tostring(k), nearest(tostring(k), names)), level + 1)
    end
  end
  local o = {}
  for k, v in pairs(valid) do if v ~= false then o[k] = v end end
  for k, v in pairs(opts) do o[k] = v end
  return o
end
train._check_opts = check_opts

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

local function rng_to_list(t) return t:long():tolist() end
local function rng_from_list(l) return av.tensor(l, {dtype = "int64"}):byte() end

local function mkdir(dir) os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") end
train._mkdir = mkdir

local function warn(msg) io.stderr:write("aviary.train: " .. msg .. "\n"); io.stderr:flush() end

------------------------------------------------------------------------------
-- Trainer
local Trainer = {}
Trainer.__index = Trainer
Trainer.__name = "aviary.train.Trainer"

--- train.Trainer({model=, optimizer=, criterion=, train_loader=, val_loader=, max_epochs=,
--   scheduler=, scheduler_step='epoch'|'iteration', scheduler_metric='val_loss', grad_clip=,
--   device=, topk=5, num_classes=, amp=false|'bf16'|'fp16'}) -> trainer
-- amp: forward passes under aviary.amp.autocast; 'fp16' also scales the loss with a GradScaler
function train.Trainer(opts)
  local who = "train.Trainer"
  local o = check_opts(who, opts, {model = false, optimizer = false, criterion = false, train_loader = false,
    val_loader = false, max_epochs = 1, scheduler = false, scheduler_step = "epoch", scheduler_metric = false,
    grad_clip = false, device = false, topk = 5, num_classes = false, amp = false}, 2)
  for _, k in ipairs({"model", "optimizer", "train_loader"}) do
    if not o[k] then error(("%s: '%s' is required"):format(who, k), 2) end
  end
  for _, k in ipairs({"train_loader", "val_loader"}) do
    local l = o[k]
    if l and (type(l) ~= "table" or not l.iter or not l.size) then
      error(("%s: %s must have :iter() and :size()"):format(who, k), 2)
    end
  end
  if math.type(o.max_epochs) ~= "integer" or o.max_epochs < 0 then
    error(who .. ": max_epochs must be a non-negative integer", 2)
  end
  if not o.criterion then o.criterion = function(x, y) return av.cross_entropy(x, y) end end
  if o.device and o.device ~= "cpu" then
    -- fail before the first batch: no GPU, or a model left behind on another device
    local ok, err = pcall(function() return av.empty(0):to(o.device) end)
    if not ok then error(("%s: device '%s': %s"):format(who, o.device, tostring(err):gsub("^.-Tensor:to: ", "")), 2) end
    local p = o.model.parameters and o.model:parameters()[1]
    local want = o.device == "cuda" and ("cuda:" .. av.cuda.current_device()) or o.device
    if p and p:device() ~= want then
      error(("%s: the model's parameters are on %s but device is '%s'; call model:to('%s') before creating "
        .. "the optimizer"):format(who, p:device(), o.device, o.device), 2)
    end
  end
  local self = setmetatable({
    model = o.model, optimizer = o.optimizer, criterion = o.criterion, scheduler = o.scheduler or nil,
    train_loader = o.train_loader, val_loader = o.val_loader or nil, grad_clip = o.grad_clip or nil,
    device = o.device or nil, topk = o.topk, num_classes = o.num_classes or nil,
    handlers = {}, _step_hooks = {}, _state_providers = {}, _phase = "idle",
    state = {epoch = 0, iteration = 0, epoch_iteration = 0, max_epochs = o.max_epochs,
             metrics = {}, should_stop = false, last_loss = nil, lr = nil, skipped_steps = 0},
  }, Trainer)
  for _, e in ipairs(EVENTS) do self.handlers[e] = {} end
  if o.amp then
    local amp = require "aviary.amp"
    self.amp = amp.dtype_name(o.amp)
    if self.amp == "float16" then
      self.scaler = amp.GradScaler()
      -- the loss scale travels with checkpoints, so a resumed run does not start over at 65536
      self:register_state("grad_scaler", function() return self.scaler:state_dict() end,
        function(v) self.scaler:load_state_dict(v) end)
    end
  end
  self.state.lr = self:current_lr()
  if self.scheduler then
    self:attach(train.handlers.lr_scheduler(self.scheduler, {step = o.scheduler_step, metric = o.scheduler_metric or nil}))
  end
  return self
end

function Trainer:current_lr()
  local g = self.optimizer.param_groups and self.optimizer.param_groups[1]
  return g and g.lr
end

--- trainer:on(event, fn [, {priority = 0}]) -> handle with :remove(); fn(trainer, state, ...)
-- Handlers of one event run by decreasing priority, then in the order attached.
function Trainer:on(event, fn, opts)
  if not IS_EVENT[event] then
    error(("Trainer:on: unknown event '%s' (did you mean '%s'?)"):format(tostring(event), nearest(tostring(event), EVENTS)), 2)
  end
  if type(fn) ~= "function" and not (type(fn) == "table" and getmetatable(fn) and getmetatable(fn).__call) then
    error("Trainer:on: expected a function", 2)
  end
  local list = self.handlers[event]
  self._seq = (self._seq or 0) + 1
  local h = {fn = fn, priority = opts and opts.priority or 0, seq = self._seq}
  list[#list + 1] = h
  table.sort(list, function(a, b)
    if a.priority ~= b.priority then return a.priority > b.priority end
    return a.seq < b.seq
  end)
  return {remove = function()
    for i, x in ipairs(list) do if x == h then table.remove(list, i); return true end end
    return false
  end}
end

--- trainer:attach(h): h(trainer) attaches a built-in (or your own) handler set; returns trainer
function Trainer:attach(h)
  h(self)
  return self
end

--- trainer:fire(event, ...): runs the event's handlers
function Trainer:fire(event, ...)
  local list = self.handlers[event]
  local snapshot = {}
  for i, h in ipairs(list) do snapshot[i] = h end
  for _, h in ipairs(snapshot) do h.fn(self, self.state, ...) end
end

--- trainer:register_state(name, get, set): a handler's state saved in checkpoints and restored by resume
function Trainer:register_state(name, get, set)
  self._state_providers[name] = {get = get, set = set}
end

--- trainer:metric(name) -> the value of 'train_loss', 'val_accuracy', 'val_f1', 'lr', ... or nil
function Trainer:metric(name)
  if name == "lr" then return self.state.lr end
  local split, key = name:match("^(%a+)_(.+)$")
  local m = split and self.state.metrics[split == "valid" and "val" or split]
  return m and m[key]
end

local function to_device(self, x)
  if self.device and self.device ~= "cpu" and av.is_tensor(x) then
    -- from pinned memory (DataLoader{pin_memory = true}) the copy overlaps the host's work
    return x:to(self.device, {non_blocking = true})
  end
  return x
end

-- the per-epoch numbers kept in state.metrics.<split>
local function summarize(self, m, loss_sum, count)
  local r = m:compute()
  local s = {loss = count > 0 and loss_sum / count or 0 / 0, n = r.n, accuracy = r.accuracy,
             precision = r.macro_precision, recall = r.macro_recall, f1 = r.macro_f1,
             weighted_f1 = r.weighted_f1, log_loss = r.log_loss, ece = r.ece}
  for _, k in ipairs(m.topk) do s["top" .. k] = r["top" .. k] end
  return s, r
end

local function new_metric(self, num_classes)
  self.num_classes = self.num_classes or num_classes
  return metrics.Classification(self.num_classes, {topk = {self.topk}})
end

-- buffers (batch-norm statistics) change during a training forward; a copy
-- taken before each forward lets an interruption there roll back to the
-- last completed iteration
local function snapshot_buffers(self)
  if not self.keep_consistent then return end
  local bufs = self._bufs
  if not bufs then
    bufs = self.model:buffers()
    self._bufs, self._buf_snap = bufs, {}
    for i, b in ipairs(bufs) do self._buf_snap[i] = b:detach():clone() end
    return
  end
  av.no_grad(function() for i, b in ipairs(bufs) do self._buf_snap[i]:copy_(b) end end)
end
local function restore_buffers(self)
  if not self._bufs then return end
  av.no_grad(function() for i, b in ipairs(self._bufs) do b:copy_(self._buf_snap[i]) end end)
end

function Trainer:_train_epoch()
  local s, model, opt = self.state, self.model, self.optimizer
  local mid = self._resume_mid
  self._resume_mid = nil
  s.epoch_iteration = 0
  s.epoch_aborted = false
  self._phase = "epoch_start"
  self:fire("epoch_started")
  model:train()
  local L = self.train_loader
  s.epoch_size = L:size()
  if L.set_epoch then L:set_epoch(s.epoch) elseif math.type(L.epoch) == "integer" then L.epoch = s.epoch - 1 end
  if mid then av.set_rng_state(rng_from_list(mid.rng_epoch_start)) end
  self._rng_epoch_start = av.get_rng_state()
  local acc = {loss_sum = 0.0, count = 0, metric = self.num_classes and new_metric(self) or nil}
  self._acc = acc
  local it = L:iter()
  self._done_epoch_iteration = 0
  if mid then
    for b = 1, mid.batches_done do
      if it() == nil then error(("train.resume: the loader ended after %d batches, the checkpoint had done %d"):format(b - 1, mid.batches_done)) end
    end
    av.set_rng_state(rng_from_list(mid.rng))
    s.epoch_iteration, self._done_epoch_iteration = mid.batches_done, mid.batches_done
    acc.loss_sum, acc.count = mid.loss_sum, mid.count
    if mid.metric then
      acc.metric = new_metric(self, mid.metric.num_classes)
      acc.metric:load_state_dict(mid.metric)
    end
  end
  self._phase = "between"
  local t0, samples = av.clock(), 0
  s.epoch_start_time = t0
  for batch in it do
    s.iteration = s.iteration + 1
    s.epoch_iteration = s.epoch_iteration + 1
    s.batch = batch
    self:fire("iteration_started")
    local x, y = to_device(self, batch.input), to_device(self, batch.target)
    snapshot_buffers(self)
    self._rng_before_forward = self.keep_consistent and av.get_rng_state() or nil
    s.lr = self:current_lr()
    self._phase = "forward"
    opt:zero_grad()
    local logits = self.amp and require("aviary.amp").autocast(self.amp, model, x) or model(x)
    local loss = self.criterion(logits, y)
    local lv = loss:item()
    s.last_loss = lv
    local n = x:size(1)
    if finite(lv) then
      local scaler = self.scaler
      if scaler then scaler:scale(loss):backward() else loss:backward() end
      self._phase = "step"
      if scaler and self.grad_clip then scaler:unscale_(opt) end -- clip the true gradients
      if self.grad_clip then s.grad_norm = require("aviary.optim").clip_grad_norm(model:parameters(), self.grad_clip) end
      if scaler then
        if not scaler:step(opt) then s.skipped_steps = s.skipped_steps + 1 end
        scaler:update()
      else
        opt:step()
      end
      for _, f in ipairs(self._step_hooks) do f(self, s) end
      acc.metric = acc.metric or new_metric(self, logits:size(2))
      acc.metric:update(logits:detach(), y)
      acc.loss_sum, acc.count = acc.loss_sum + lv * n, acc.count + n
    else
      s.skipped_steps = s.skipped_steps + 1   -- a non-finite loss never reaches the weights
    end
    samples = samples + n
    self._done_iteration, self._done_epoch_iteration = s.iteration, s.epoch_iteration
    self._phase = "between"
    local el = av.clock() - t0
    s.samples_per_sec = el > 0 and samples / el or 0
    self:fire("iteration_completed")
    s.batch = nil
    if s.should_stop then s.epoch_aborted = true; break end
  end
  s.epoch_time = av.clock() - t0
  self._phase = "epoch_end"
  if s.epoch_aborted then return end
  if acc.metric then s.metrics.train, s.reports_train = summarize(self, acc.metric, acc.loss_sum, acc.count)
  else s.metrics.train = {loss = 0 / 0, n = 0} end
  s.metrics.train.samples_per_sec = s.samples_per_sec
  s.metrics.train.time = s.epoch_time
end

--- trainer:evaluate(loader) -> summary {loss, accuracy, top5, precision, recall, f1, ...}, full report
function Trainer:evaluate(loader)
  local model = self.model
  local was_training = model.training
  model:evaluate()
  local m, loss_sum, count = nil, 0.0, 0
  local t0 = av.clock()
  av.no_grad(function()
    for batch in loader:iter() do
      local x, y = to_device(self, batch.input), to_device(self, batch.target)
      local logits = self.amp and require("aviary.amp").autocast(self.amp, model, x) or model(x)
      local lv = self.criterion(logits, y):item()
      local n = x:size(1)
      m = m or new_metric(self, logits:size(2))
      m:update(logits, y)
      loss_sum, count = loss_sum + lv * n, count + n
    end
  end)
  model:train(was_training)
  if not m then return {loss = 0 / 0, n = 0}, nil end
  local sm, r = summarize(self, m, loss_sum, count)
  sm.time = av.clock() - t0
  return sm, r
end

function Trainer:_loop()
  local s = self.state
  self._phase = "started"
  self:fire("started")
  while s.epoch < s.max_epochs and not s.should_stop do
    s.epoch = s.epoch + 1
    s.metrics = {}
    self:_train_epoch()
    if s.epoch_aborted then break end   -- cut short: no epoch_completed, no validation, no checkpoint
    self:fire("epoch_completed")
    self._phase = "validate"
    if self.val_loader then s.metrics.val, s.reports_val = self:evaluate(self.val_loader) end
    self:fire("validation_completed")
    self._phase = "between_epochs"
  end
  self._phase = "completed"
  self:fire("completed")
end

--- trainer:run() -> state; an error (or Ctrl-C's "interrupted") fires 'exception' and is raised again
function Trainer:run()
  local s = self.state
  s.should_stop, s.stop_reason, s.exception, s.interrupted = false, nil, nil, false
  local tb
  local ok, err = xpcall(self._loop, function(e)
    tb = debug.traceback(tostring(e), 2)
    return e
  end, self)
  if ok then return s end
  s.exception, s.traceback = err, tb
  s.interrupted = tostring(err):find("interrupted", 1, true) ~= nil
  for _, h in ipairs(self.handlers.exception) do
    local hok, herr = pcall(h.fn, self, s, err)
    if not hok then warn("an exception handler failed: " .. tostring(herr)) end
  end
  error(err, 0)
end

------------------------------------------------------------------------------
-- checkpoints of the whole run

local function trainer_meta(self)
  local s = self.state
  local hs = {}
  for name, p in pairs(self._state_providers) do hs[name] = p.get() end
  local m = {}
  for split, t in pairs(s.metrics) do
    local c = {}
    for k, v in pairs(t) do if type(v) == "number" then c[k] = v end end
    m[split] = c
  end
  return {epoch = s.epoch, iteration = s.iteration, max_epochs = s.max_epochs, metrics = m, handlers = hs,
          num_classes = self.num_classes, skipped_steps = s.skipped_steps}
end

--- trainer:save_checkpoint(path [, extra_metadata]): the end-of-epoch state, resumable
function Trainer:save_checkpoint(path, extra)
  local meta = {trainer = trainer_meta(self)}
  for k, v in pairs(extra or {}) do meta[k] = v end
  checkpoint.save(path, {model = self.model, optimizer = self.optimizer, scheduler = self.scheduler,
                         epoch = self.state.epoch, step = self.state.iteration, metadata = meta})
end

--- trainer:save_interrupted(path) -> true, or false and why: the state after the last completed
-- iteration of an epoch cut short by an error; resuming from it continues bit for bit
function Trainer:save_interrupted(path)
  local s, phase = self.state, self._phase
  if phase ~= "between" and phase ~= "forward" then
    return false, ("the error came outside a training iteration (%s)"):format(phase)
  end
  if phase == "forward" and not self.keep_consistent then
    return false, "the error came during a forward pass (batch-norm statistics were not kept)"
  end
  if phase == "forward" then
    restore_buffers(self)
    av.set_rng_state(self._rng_before_forward)
  end
  local acc = self._acc
  local meta = {trainer = trainer_meta(self)}
  meta.trainer.epoch = s.epoch - 1
  meta.trainer.iteration = self._done_iteration or (s.iteration - s.epoch_iteration)
  meta.mid_epoch = {epoch = s.epoch, batches_done = self._done_epoch_iteration or 0,
                    rng_epoch_start = rng_to_list(self._rng_epoch_start), rng = rng_to_list(av.get_rng_state()),
                    loss_sum = acc.loss_sum, count = acc.count, metric = acc.metric and acc.metric:state_dict() or nil}
  checkpoint.save(path, {model = self.model, optimizer = self.optimizer, scheduler = self.scheduler,
                         epoch = s.epoch - 1, step = meta.trainer.iteration, metadata = meta})
  return true
end

--- train.resume(run_dir_or_checkpoint, trainer) -> checkpoint info
-- restores model, optimizer, scheduler, RNG, epoch, iteration, handler state and
-- (for a checkpoint taken mid-epoch) the position inside the epoch; trainer:run() then
-- continues so that the final weights equal an uninterrupted run's
function train.resume(path, trainer)
  if type(path) ~= "string" then error("train.resume: expected a run folder or a checkpoint path", 2) end
  local f = io.open(path .. "/last.ckpt", "rb")
  if f then f:close(); path = path .. "/last.ckpt" end
  local info = checkpoint.load(path, {model = trainer.model, optimizer = trainer.optimizer, scheduler = trainer.scheduler})
  local md = info.metadata or {}
  local tm = md.trainer or {}
  local s = trainer.state
  s.epoch = info.epoch or tm.epoch or 0
  s.iteration = info.step or tm.iteration or 0
  s.metrics = tm.metrics or {}
  s.skipped_steps = tm.skipped_steps or 0
  s.resumed_from = path
  trainer.num_classes = trainer.num_classes or tm.num_classes
  for name, st in pairs(tm.handlers or {}) do
    local p = trainer._state_providers[name]
    if p then p.set(st) end
  end
  trainer._resume_mid = md.mid_epoch
  trainer._done_iteration = s.iteration
  s.lr = trainer:current_lr()
  return info
end

------------------------------------------------------------------------------
-- built-in handlers: each returns a function that attaches it to a trainer
local H = train.handlers

local function better(mode, a, b)
  if b == nil then return true end
  if mode == "max" then return a > b end
  return a < b
end

local function mode_for(metric, mode)
  if mode then return mode end
  return (metric:find("loss") or metric:find("ece")) and "min" or "max"
end

--- handlers.lr_scheduler(sched, {step = 'epoch'|'iteration', metric = 'val_loss'}): steps a
-- scheduler after every epoch (after validation for ReduceLROnPlateau, given `metric`) or
-- every optimizer step
function H.lr_scheduler(sched, opts)
  local o = check_opts("handlers.lr_scheduler", opts, {step = "epoch", metric = false}, 2)
  if o.step ~= "epoch" and o.step ~= "iteration" then
    error("handlers.lr_scheduler: step must be 'epoch' or 'iteration', got " .. tostring(o.step), 2)
  end
  local plateau = getmetatable(sched) and getmetatable(sched).__name == "ReduceLROnPlateau"
  return function(t)
    if o.step == "iteration" then
      t._step_hooks[#t._step_hooks + 1] = function() sched:step() end
      return
    end
    if plateau then
      local metric = o.metric or (t.val_loader and "val_loss" or "train_loss")
      if metric:match("^val") and not t.val_loader then
        error("handlers.lr_scheduler: ReduceLROnPlateau on " .. metric .. " needs a val_loader", 3)
      end
      t:on("validation_completed", function(tr, s)
        local v = tr:metric(metric)
        if v == nil then error("lr_scheduler: no metric named " .. metric) end
        sched:step(v)
        s.lr = tr:current_lr()
      end, {priority = 100})
    else
      t:on("epoch_completed", function(tr, s) sched:step(); s.lr = tr:current_lr() end, {priority = 100})
    end
  end
end

--- handlers.early_stopping({patience = 5, metric = 'val_accuracy', mode = 'max', min_delta = 0})
function H.early_stopping(opts)
  local o = check_opts("handlers.early_stopping", opts, {patience = 5, metric = "val_accuracy", mode = false, min_delta = 0}, 2)
  local mode = mode_for(o.metric, o.mode)
  local st = {best = nil, bad = 0}
  return function(t)
    t:register_state("early_stopping", function() return {best = st.best, bad = st.bad} end,
      function(v) st.best, st.bad = v.best, v.bad end)
    t:on("validation_completed", function(tr, s)
      local v = tr:metric(o.metric)
      if v == nil then error("early_stopping: no metric named " .. o.metric) end
      local improved = st.best == nil or (mode == "max" and v > st.best + o.min_delta) or (mode == "min" and v < st.best - o.min_delta)
      if improved then st.best, st.bad = v, 0 else st.bad = st.bad + 1 end
      s.early_stopping = {best = st.best, bad_epochs = st.bad}
      if st.bad >= o.patience then
        s.should_stop = true
        s.stop_reason = ("early stopping: %s has not improved for %d epochs (best %.6g)"):format(o.metric, st.bad, st.best)
      end
    end, {priority = -10})
  end
end

--- handlers.nan_guard(): stops the run at the first non-finite loss (the update is skipped, the
-- epoch is not completed, so no checkpoint is written from it: the last good one stays)
function H.nan_guard(opts)
  local o = check_opts("handlers.nan_guard", opts, {quiet = false}, 2)
  return function(t)
    t:on("iteration_completed", function(_, s)
      if not finite(s.last_loss) then
        s.should_stop = true
        s.stop_reason = ("nan_guard: the loss is %s at iteration %d (epoch %d, batch %d); stopped, the last checkpoint is kept")
          :format(tostring(s.last_loss), s.iteration, s.epoch, s.epoch_iteration)
        if not o.quiet then warn(s.stop_reason) end
      end
    end, {priority = 1000})
  end
end

local function exists(p) local f = io.open(p, "rb"); if f then f:close(); return true end return false end

--- handlers.sigint(dir): when run() fails (Ctrl-C, or any error) saves dir/last.ckpt at the last
-- completed iteration so that train.resume(dir, trainer) continues exactly; otherwise the
-- last end-of-epoch checkpoint stays
function H.sigint(dir, opts)
  local o = check_opts("handlers.sigint", opts, {file = "last.ckpt", quiet = false}, 2)
  return function(t)
    t.keep_consistent = true
    t:on("exception", function(tr, s)
      mkdir(dir)
      local path = dir .. "/" .. o.file
      local ok, why = tr:save_interrupted(path)
      if not o.quiet then
        if ok then
          warn(("%s at epoch %d, iteration %d: saved %s; continue with train.resume('%s', trainer)")
            :format(s.interrupted and "interrupted" or "stopped by an error", s.epoch, tr._done_iteration or 0, path, dir))
        else
          warn(("no mid-epoch checkpoint: %s%s"):format(why, exists(path) and ("; " .. path .. " (end of the last epoch) stays") or ""))
        end
      end
    end)
  end
end

--- handlers.checkpoint_last(dir): dir/last.ckpt after every epoch (atomic) and, like
-- handlers.sigint, at the last completed iteration when run() fails
function H.checkpoint_last(dir, opts)
  local o = check_opts("handlers.checkpoint_last", opts, {file = "last.ckpt", on_exception = true, quiet = false}, 2)
  return function(t)
    t:on("validation_completed", function(tr)
      mkdir(dir)
      tr:save_checkpoint(dir .. "/" .. o.file)
    end, {priority = -100})
    if o.on_exception then H.sigint(dir, {file = o.file, quiet = o.quiet})(t) end
  end
end

--- handlers.checkpoint_best(dir, {metric = 'val_accuracy', mode = 'max', keep = 1}): keeps the
-- `keep` best epochs' checkpoints: dir/best.ckpt when keep = 1, else dir/best-epoch<NNN>.ckpt;
-- dir/best.json lists them, best first
function H.checkpoint_best(dir, opts)
  local o = check_opts("handlers.checkpoint_best", opts, {metric = "val_accuracy", mode = false, keep = 1}, 2)
  if math.type(o.keep) ~= "integer" or o.keep < 1 then error("handlers.checkpoint_best: keep must be a positive integer", 2) end
  local mode = mode_for(o.metric, o.mode)
  local kept = {}    -- {epoch=, value=, file=}, best first
  return function(t)
    t:register_state("checkpoint_best", function() return kept end, function(v) kept = v end)
    t:on("validation_completed", function(tr, s)
      local v = tr:metric(o.metric)
      if v == nil then error("checkpoint_best: no metric named " .. o.metric) end
      if not finite(v) then return end
      if #kept >= o.keep and not better(mode, v, kept[#kept].value) then return end
      mkdir(dir)
      local file = o.keep == 1 and "best.ckpt" or ("best-epoch%03d.ckpt"):format(s.epoch)
      local entry = {epoch = s.epoch, value = v, file = file, metric = o.metric}
      local pos = #kept + 1
      for i, k in ipairs(kept) do if better(mode, v, k.value) then pos = i; break end end
      table.insert(kept, pos, entry)
      tr:save_checkpoint(dir .. "/" .. file, {best = entry})
      while #kept > o.keep do
        local gone = table.remove(kept)
        if gone.file ~= file then os.remove(dir .. "/" .. gone.file) end
      end
      s.best = kept[1]
      json.write(dir .. "/best.json", kept)
    end, {priority = -100})
  end
end

-- the logging handlers (jsonl, history, tensorboard, progress) live in aviary/train/log.lua
require("aviary.train.log")(H, {check_opts = check_opts, finite = finite, mkdir = mkdir, warn = warn})

--- train.standard_handlers(trainer, run_dir, {log_every = 50, tb_every = 10, histograms = true,
--   progress = true, checkpoint_metric = 'val_accuracy', keep_best = 1, early_stopping = nil (or
--   {patience=, metric=, mode=}), nan_guard = true}): the usual run folder —
-- last.ckpt, best.ckpt, best.json, history.json, metrics.jsonl, tb/events.out.tfevents.*
function train.standard_handlers(t, dir, opts)
  local o = check_opts("train.standard_handlers", opts, {log_every = 50, tb_every = 10, histograms = true,
    progress = true, checkpoint_metric = false, keep_best = 1, early_stopping = false, nan_guard = true,
    tensorboard = true}, 2)
  mkdir(dir)
  local metric = o.checkpoint_metric or (t.val_loader and "val_accuracy" or "train_accuracy")
  if o.nan_guard then t:attach(H.nan_guard()) end
  t:attach(H.checkpoint_last(dir))
  t:attach(H.checkpoint_best(dir, {metric = metric, keep = o.keep_best}))
  if o.early_stopping then t:attach(H.early_stopping(o.early_stopping)) end
  t:attach(H.history(dir .. "/history.json"))
  t:attach(H.jsonl(dir .. "/metrics.jsonl", {every = o.log_every}))
  if o.tensorboard then t:attach(H.tensorboard(dir .. "/tb", {every = o.tb_every, histograms = o.histograms})) end
  if o.progress then t:attach(H.progress(type(o.progress) == "table" and o.progress or nil)) end
  return t
end

return train
