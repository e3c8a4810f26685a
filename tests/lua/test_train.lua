-- aviary.train, aviary.metrics and aviary.tensorboard: the order of the
-- trainer's events, metrics against scikit-learn, early stopping, the NaN
-- guard, best-n checkpoints, exact resume after an error mid-epoch (bit-identical
-- final weights), the run folder's history.json / metrics.jsonl, and TensorBoard
-- event files decoded by protoc-generated code with every CRC checked.
local av = require "aviary"
local nn = require "aviary.nn"
local optim = require "aviary.optim"
local sched = require "aviary.optim.lr_scheduler"
local metrics = require "aviary.metrics"
local train = require "aviary.train"
local tb = require "aviary.tensorboard"
local json = require "aviary.json"
local checkpoint = require "aviary.checkpoint"

local C, H = 5, 6

-- a tiny in-memory loader with the DataLoader protocol: :size(), :iter() (shuffled with
-- aviary's generator, so resuming must restore it)
local function Loader(x, y, bs, shuffle)
  local L = {x = x, y = y, bs = bs}
  function L:size() return (self.x:size(1) + self.bs - 1) // self.bs end
  function L:num_samples() return self.x:size(1) end
  function L:iter()
    local n = self.x:size(1)
    local order = {}
    if shuffle then
      for i, v in ipairs(av.randperm(n):tolist()) do order[i] = v + 1 end
    else
      for i = 1, n do order[i] = i end
    end
    local b, nb = 0, self:size()
    return function()
      b = b + 1
      if b > nb then return nil end
      local idx, paths = {}, {}
      for k = (b - 1) * self.bs + 1, math.min(b * self.bs, n) do
        idx[#idx + 1] = order[k]
        paths[#paths + 1] = ("img%03d.jpg"):format(order[k])
      end
      return {input = self.x:index_select(1, idx), target = self.y:index_select(1, idx), path = paths}
    end
  end
  return L
end

-- class-dependent inputs, so the problem is learnable
local function dataset(n, seed)
  av.manual_seed(seed)
  local y = av.randint(1, C + 1, {n})
  local x = av.randn(n, 3, H, H) * 0.5
  local shift = (y:double() - 3):view(n, 1, 1, 1):float()
  x = x + shift
  return x, y
end

local function build(seed)
  av.manual_seed(seed)
  return nn.Sequential(nn.Conv2d(3, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4, C))
end

local function setup(o)
  o = o or {}
  local xt, yt = dataset(o.n or 40, 11)
  local xv, yv = dataset(20, 12)
  local model = build(o.seed or 1)
  local opt = optim.SGD(model:parameters(), {lr = o.lr or 0.05, momentum = 0.9})
  local sc = o.scheduler and o.scheduler(opt) or nil
  local t = train.Trainer({model = model, optimizer = opt, scheduler = sc, scheduler_step = o.scheduler_step,
    scheduler_metric = o.scheduler_metric, criterion = o.criterion or nn.CrossEntropyLoss(),
    train_loader = Loader(xt, yt, 8, true), val_loader = Loader(xv, yv, 8, false),
    max_epochs = o.max_epochs or 3, grad_clip = o.grad_clip, topk = 3})
  return t, model, opt, sc
end

local function identical(a, b)
  local sa, sb = a:state_dict(), b:state_dict()
  for k, t in pairs(sa) do
    local d = (t:double() - sb[k]:double()):abs():max():item()
    if d ~= 0 then return false, ("%s differs by %g"):format(k, d) end
  end
  return true
end

local function fresh_dir()
  local d = av_test.tmpname("_run")
  os.execute("rm -rf '" .. d .. "'")
  return d
end

local function read_all(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function ls(dir)
  local p = io.popen("ls -1 '" .. dir .. "' 2>/dev/null")
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function have_py(mod)
  return os.execute(av_test.python_bin .. " -c 'import " .. mod .. "' >/dev/null 2>&1") == true
end

describe("metrics.Classification", function()
  it("matches scikit-learn (streamed in chunks, a class never seen, zero_division=0)", function()
    if not have_py("sklearn") then skip("python3-sklearn not installed") end
    local K, N = 7, 53
    av.manual_seed(3)
    local logits = av.randn(N, K) * 2
    logits[{{}, 7}] = -50             -- class 7: never predicted, never a target
    local target = av.randint(1, 7, {N})
    local m = metrics.Classification(K, {topk = {1, 3, 5}})
    m:update(logits:narrow(1, 1, 20), target:narrow(1, 1, 20))
    m:update(logits:narrow(1, 21, 13), target:narrow(1, 21, 13))
    m:update(logits:narrow(1, 34, 20), target:narrow(1, 34, 20))
    local r = m:compute()
    local fin = av_test.tmpname(".json")
    json.write(fin, {logits = logits:double():tolist(), target = target:tolist()})
    local py = av_test.tmpname(".py")
    local f = assert(io.open(py, "w"))
    f:write([[
import json, sys
import numpy as np
from sklearn import metrics as M
d = json.load(open(sys.argv[1]))
x = np.array(d["logits"]); y = np.array(d["target"]) - 1
K = x.shape[1]; labels = list(range(K))
p = np.exp(x - x.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
pred = x.argmax(1)
out = {"accuracy": M.accuracy_score(y, pred),
       "top3": M.top_k_accuracy_score(y, x, k=3, labels=labels),
       "top5": M.top_k_accuracy_score(y, x, k=5, labels=labels),
       "confusion": M.confusion_matrix(y, pred, labels=labels).tolist(),
       "log_loss": M.log_loss(y, p, labels=labels)}
for avg in ("macro", "weighted"):
    pr, rc, f1, _ = M.precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
    out[avg] = [pr, rc, f1]
pr, rc, f1, sup = M.precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=0)
out["per_class"] = [pr.tolist(), rc.tolist(), f1.tolist(), sup.tolist()]
conf = p.max(1); correct = (pred == y).astype(float)
ece = 0.0
b = np.clip(np.ceil(conf * 15), 1, 15)
for i in range(1, 16):
    s = b == i
    if s.any(): ece += abs(correct[s].mean() - conf[s].mean()) * s.mean()
out["ece"] = ece
print(json.dumps(out))
]])
    f:close()
    local ok, out = av_test.python(py, fin)
    assert.truthy(ok, out)
    local ref = json.decode(out)
    assert.equal(r.n, N)
    assert.near(r.accuracy, ref.accuracy, 1e-12, "accuracy")
    assert.near(r.top3, ref.top3, 1e-12, "top3")
    assert.near(r.top5, ref.top5, 1e-12, "top5")
    assert.same(r.confusion:tolist(), ref.confusion)
    assert.near(r.log_loss, ref.log_loss, 1e-9, "log_loss")
    assert.near(r.ece, ref.ece, 1e-9, "ece")
    for i, kind in ipairs({"precision", "recall", "f1"}) do
      assert.near(r.macro[kind], ref.macro[i], 1e-12, "macro " .. kind)
      assert.near(r["weighted_" .. kind], ref.weighted[i], 1e-12, "weighted " .. kind)
      for c = 1, K do assert.near(r.per_class[kind][c], ref.per_class[i][c], 1e-12, kind .. " class " .. c) end
    end
    for c = 1, K do assert.equal(r.per_class.support[c], ref.per_class[4][c]) end
    os.remove(fin); os.remove(py)
  end)

  it("reset, state_dict round trip, one-shot helpers, argument errors", function()
    av.manual_seed(4)
    local x, y = av.randn(10, 4), av.randint(1, 5, {10})
    local m = metrics.Classification(4)
    m:update(x, y)
    local r1 = m:compute()
    local m2 = metrics.Classification(4):load_state_dict(json.decode(json.encode(m:state_dict())))
    assert.near(m2:compute().log_loss, r1.log_loss, 0)
    assert.near(metrics.classification(x, y).accuracy, r1.accuracy, 0)
    assert.near(metrics.accuracy(x, y), r1.accuracy, 1e-12)
    assert.near(metrics.accuracy(x, y, 4), 1.0, 0)
    m:reset()
    assert.equal(m:compute().n, 0)
    assert.equal(m:compute().accuracy, 0.0)
    assert.error_matches(function() m:update(av.randn(3, 5), av.tensor({1, 2, 3})) end, "5 classes")
    assert.error_matches(function() m:update(x, av.tensor({1, 2, 3})) end, "target")
    assert.error_matches(function() m:update(av.randn(1, 4), av.tensor({5})) end, "outside 1..4")
    assert.error_matches(function() metrics.Classification(4, {bins = 3}) end, "unknown option")
  end)
end)

describe("tensorboard", function()
  it("crc32c test vectors", function()
    assert.equal(tb.crc32c("123456789"), 0xE3069283)
    assert.equal(tb.crc32c(""), 0)
    assert.equal(tb.crc32c(("\0"):rep(32)), 0x8A9136AA)
  end)

  it("an event file decodes with protoc-generated code; every CRC checks", function()
    if not (have_py("google.protobuf") and os.execute("protoc --version >/dev/null 2>&1")) then
      skip("python3-protobuf / protobuf-compiler not installed")
    end
    local dir = fresh_dir()
    local w = tb.SummaryWriter(dir)
    w:add_scalar("train/loss", 0.25, 1)
    w:add_scalar("train/loss", 1 / 3, 300000000000)
    w:add_scalar("neg", -2.5, -4)
    av.manual_seed(5)
    local v = av.randn(1000)
    w:add_histogram("weights/w", v, 7, {bins = 20})
    w:add_histogram("const", av.ones(3), 8)
    w:add_image("img", "\137PNG\r\n\26\n" .. ("x"):rep(5000), 12, 34, 9)
    w:close()
    assert.truthy(w.path:match("/events%.out%.tfevents%.%d+%.[^/]+$"), w.path)
    local ok, out = av_test.python(av_test.root .. "/tests/parity/tb_check.py", w.path)
    assert.truthy(ok, out)
    local recs = {}
    for l in out:gmatch("[^\n]+") do recs[#recs + 1] = json.decode(l) end
    assert.equal(recs[#recs].records, 7)
    assert.equal(recs[1].file_version, "brain.Event:2")
    assert.truthy(math.abs(recs[1].wall_time - os.time()) < 60)
    assert.same({recs[2].tag, recs[2].step, recs[2].value}, {"train/loss", 1, 0.25})
    assert.equal(recs[3].step, 300000000000)
    assert.near(recs[3].value, 1 / 3, 1e-7)
    assert.same({recs[4].tag, recs[4].step, recs[4].value}, {"neg", -4, -2.5})
    local h = recs[5]
    assert.equal(h.kind, "histo")
    assert.equal(h.num, 1000)
    assert.near(h.min, v:min():item(), 0)
    assert.near(h.max, v:max():item(), 0)
    assert.near(h.sum, v:double():sum():item(), 1e-9)
    assert.near(h.sum_squares, (v:double() ^ 2):sum():item(), 1e-9)
    assert.equal(#h.bucket, 20)
    local total = 0
    for _, c in ipairs(h.bucket) do total = total + c end
    assert.equal(total, 1000)
    assert.near(h.bucket_limit[20], h.max, 0)
    assert.same({recs[6].bucket_limit, recs[6].bucket}, {{1.0}, {3.0}})
    assert.same({recs[7].kind, recs[7].height, recs[7].width, recs[7].colorspace, recs[7].size, recs[7].head},
      {"image", 12, 34, 3, 5008, "89504e470d0a1a0a"})
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

describe("train.Trainer", function()
  it("fires events in order, with state", function()
    local t = setup({max_epochs = 2, n = 24})
    local seen = {}
    for _, e in ipairs(train.EVENTS) do
      t:on(e, function(_, s) seen[#seen + 1] = e .. ":" .. s.epoch .. ":" .. s.iteration end)
    end
    local order = {}
    t:on("started", function() order[#order + 1] = "low" end, {priority = -1})
    t:on("started", function() order[#order + 1] = "high" end, {priority = 5})
    t:run()
    local want = {"started:0:0"}
    local it = 0
    for e = 1, 2 do
      want[#want + 1] = "epoch_started:" .. e .. ":" .. it
      for _ = 1, 3 do
        it = it + 1
        want[#want + 1] = "iteration_started:" .. e .. ":" .. it
        want[#want + 1] = "iteration_completed:" .. e .. ":" .. it
      end
      want[#want + 1] = "epoch_completed:" .. e .. ":" .. it
      want[#want + 1] = "validation_completed:" .. e .. ":" .. it
    end
    want[#want + 1] = "completed:2:6"
    assert.same(seen, want)
    assert.same(order, {"high", "low"})
    assert.error_matches(function() t:on("epoch_complete", print) end, "did you mean 'epoch_completed'")
    assert.error_matches(function() train.Trainer({model = 1}) end, "'optimizer' is required")
    assert.error_matches(function() setup({max_epochs = 1}):attach(train.handlers.early_stopping({patiance = 2})) end,
      "did you mean 'patience'")
  end)

  it("learns the tiny problem; epoch metrics equal aviary.metrics on the same outputs", function()
    local t, model = setup({max_epochs = 4, grad_clip = 5.0})
    local s = t:run()
    assert.truthy(s.metrics.train.loss < 1.5, "train loss " .. s.metrics.train.loss)
    assert.truthy(s.metrics.val.accuracy > 0.5, "val accuracy " .. s.metrics.val.accuracy)
    assert.truthy(s.grad_norm and s.grad_norm > 0)
    -- validation numbers: recompute directly
    model:evaluate()
    local m = metrics.Classification(C, {topk = {3}})
    local loss_sum, n = 0, 0
    av.no_grad(function()
      for b in t.val_loader:iter() do
        local out = model(b.input)
        m:update(out, b.target)
        loss_sum = loss_sum + av.cross_entropy(out, b.target):item() * b.input:size(1)
        n = n + b.input:size(1)
      end
    end)
    local r = m:compute()
    assert.near(s.metrics.val.accuracy, r.accuracy, 0)
    assert.near(s.metrics.val.top3, r.top3, 0)
    assert.near(s.metrics.val.f1, r.macro_f1, 0)
    assert.near(s.metrics.val.precision, r.macro_precision, 0)
    assert.near(s.metrics.val.recall, r.macro_recall, 0)
    assert.near(s.metrics.val.loss, loss_sum / n, 1e-12)
    assert.equal(s.metrics.train.n, 40)
    assert.equal(t:metric("val_accuracy"), s.metrics.val.accuracy)
    assert.equal(t:metric("train_loss"), s.metrics.train.loss)
  end)

  it("early stopping stops after `patience` epochs without improvement", function()
    local t = setup({max_epochs = 10})
    local script = {1.0, 0.9, 0.95, 0.92, 0.5}
    t:on("validation_completed", function(_, s) s.metrics.val.loss = script[s.epoch] end, {priority = 500})
    t:attach(train.handlers.early_stopping({patience = 2, metric = "val_loss"}))
    local s = t:run()
    assert.equal(s.epoch, 4)
    assert.truthy(s.should_stop)
    assert.truthy(s.stop_reason:find("val_loss has not improved for 2 epochs", 1, true), s.stop_reason)
  end)

  it("ReduceLROnPlateau steps on the validation metric; StepLR per epoch; OneCycle per iteration", function()
    local t = setup({lr = 0.1, max_epochs = 4, scheduler_metric = "val_loss",
      scheduler = function(o) return sched.ReduceLROnPlateau(o, {patience = 1, factor = 0.5}) end})
    -- a constant val_loss: epochs 1 (best), 2 (bad 1), 3 (bad 2 > patience: halve)
    local lrs = {}
    t:on("validation_completed", function(_, s) s.metrics.val.loss = 1.0 end, {priority = 500})
    t:on("validation_completed", function(_, s) lrs[#lrs + 1] = s.lr end, {priority = -1})
    t:run()
    assert.same(lrs, {0.1, 0.1, 0.05, 0.05})
    local t2, _, opt2 = setup({max_epochs = 3, scheduler = function(o) return sched.StepLR(o, {step_size = 1, gamma = 0.5}) end})
    t2:run()
    assert.near(opt2.param_groups[1].lr, 0.05 / 8, 1e-15)
    local t3, _, opt3 = setup({max_epochs = 1, scheduler_step = "iteration",
      scheduler = function(o) return sched.StepLR(o, {step_size = 1, gamma = 0.5}) end})
    t3:run()
    assert.near(opt3.param_groups[1].lr, 0.05 / 32, 1e-15)   -- 5 batches
  end)

  it("nan_guard stops at the first non-finite loss, names the iteration, keeps the last checkpoint", function()
    local dir = fresh_dir()
    local calls = 0
    local crit = nn.CrossEntropyLoss()
    local model
    local t
    t, model = setup({max_epochs = 5, criterion = function(x, y)
      local l = crit(x, y)
      if not model.training then return l end
      calls = calls + 1
      if calls == 8 then return l * (0 / 0) end     -- epoch 2, batch 3
      return l
    end})
    t:attach(train.handlers.nan_guard({quiet = true}))
    t:attach(train.handlers.checkpoint_last(dir))
    local ended = {}
    t:on("epoch_completed", function(_, s) ended[#ended + 1] = s.epoch end)
    local before
    t:on("iteration_completed", function(_, s) if s.iteration == 7 then before = model:state_dict()["6.weight"]:clone() end end)
    local s = t:run()
    assert.truthy(s.should_stop)
    assert.truthy(s.stop_reason:find("iteration 8 (epoch 2, batch 3)", 1, true), s.stop_reason)
    assert.same(ended, {1})
    assert.equal(s.skipped_steps, 1)
    -- the NaN never reached the weights
    assert.near((model:state_dict()["6.weight"] - before):abs():max():item(), 0, 0)
    local info = checkpoint.read(dir .. "/last.ckpt")
    assert.equal(info.epoch, 1)
    assert.equal(info.step, 5)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("checkpoint_best keeps the best n and best.json lists them", function()
    local dir = fresh_dir()
    local script = {0.1, 0.5, 0.3, 0.7, 0.2}
    local t = setup({max_epochs = 5, lr = 0.0})
    t:on("validation_completed", function(_, s) s.metrics.val.accuracy = script[s.epoch] end)
    t:attach(train.handlers.checkpoint_best(dir, {metric = "val_accuracy", keep = 2}))
    t:attach(train.handlers.checkpoint_best(dir .. "/one"))
    t:run()
    assert.same(ls(dir), {"best-epoch002.ckpt", "best-epoch004.ckpt", "best.json", "one"})
    local kept = json.read(dir .. "/best.json")
    assert.same({kept[1].epoch, kept[1].value, kept[2].epoch, kept[2].value}, {4, 0.7, 2, 0.5})
    local info = checkpoint.read(dir .. "/best-epoch004.ckpt")
    assert.equal(info.epoch, 4)
    assert.equal(info.metadata.best.value, 0.7)
    assert.same(ls(dir .. "/one"), {"best.ckpt", "best.json"})
    assert.equal(checkpoint.read(dir .. "/one/best.ckpt").epoch, 4)
    assert.equal(t.state.best.epoch, 4)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  -- uninterrupted vs. interrupted + resumed; `fail(trainer)` installs the failure
  local function resume_case(fail, opts)
    opts = opts or {}
    local mk = function(seed)
      return setup({max_epochs = 3, seed = seed, scheduler_step = opts.scheduler_step,
        scheduler = function(o) return sched.StepLR(o, {step_size = opts.step_size or 1, gamma = 0.7}) end})
    end
    local straight_dir = fresh_dir()
    av.manual_seed(100)
    local t1, m1 = mk(1)
    train.standard_handlers(t1, straight_dir, {progress = false, log_every = 2, histograms = false})
    av.manual_seed(100)
    t1:run()

    local dir = fresh_dir()
    local t2, m2 = mk(1)
    train.standard_handlers(t2, dir, {progress = false, log_every = 2, histograms = false})
    fail(t2, m2)
    av.manual_seed(100)
    local ok, err = pcall(t2.run, t2)
    assert.falsy(ok)
    assert.truthy(tostring(err):find("interrupted", 1, true), tostring(err))
    assert.truthy(t2.state.interrupted)
    local info = checkpoint.read(dir .. "/last.ckpt")

    local t3, m3 = mk(99)                         -- other initial weights: resume must overwrite them
    train.standard_handlers(t3, dir, {progress = false, log_every = 2, histograms = false})
    av.manual_seed(12345)                         -- and another generator state
    train.resume(dir, t3)
    t3:run()
    local same, why = identical(m1, m3)
    assert.truthy(same, why)
    assert.same(json.read(dir .. "/history.json"), json.read(straight_dir .. "/history.json"))
    local function records(p)
      local out = {}
      for l in read_all(p):gmatch("[^\n]+") do
        local r = json.decode(l)
        r.time, r.samples_per_sec = nil, nil
        if r.train then r.train.time, r.train.samples_per_sec = nil, nil end
        if r.val then r.val.time = nil end
        out[#out + 1] = r
      end
      return out
    end
    assert.same(records(dir .. "/metrics.jsonl"), records(straight_dir .. "/metrics.jsonl"))
    os.execute("rm -rf '" .. dir .. "' '" .. straight_dir .. "'")
    return info
  end

  it("resume after an error in a handler mid-epoch 2 gives bit-identical final weights", function()
    local info = resume_case(function(t)
      t:on("iteration_completed", function(_, s) if s.iteration == 7 then error("interrupted!") end end)
    end)
    assert.equal(info.epoch, 1)
    assert.equal(info.step, 7)
    assert.equal(info.metadata.mid_epoch.batches_done, 2)
  end)

  it("resume after an interruption inside a forward pass (batch norm rolled back), iteration scheduler", function()
    local info = resume_case(function(t, m)
      local n = 0
      m:get("5"):register_forward_hook(function(mod)
        if mod.training then
          n = n + 1
          if n == 8 then error("interrupted!") end
        end
      end)
    end, {scheduler_step = "iteration", step_size = 3})
    assert.equal(info.step, 7)
    assert.equal(info.metadata.mid_epoch.batches_done, 2)
  end)

  it("resume from an end-of-epoch checkpoint (error while validating)", function()
    local info = resume_case(function(t)
      t:on("epoch_completed", function(_, s) if s.epoch == 2 then error("interrupted!") end end, {priority = 200})
    end)
    assert.equal(info.epoch, 1)
    assert.equal(info.metadata.mid_epoch, nil)
  end)

  it("a real SIGINT in a child bin/aviary: checkpoint, exit, resume equals the straight run", function()
    if os.getenv("AV_SANITIZED") then skip("child processes under the sanitizer build are slow") end
    local host = (arg and arg[-1]) or (av_test.root .. "/bin/aviary")
    local script = av_test.tmpname(".lua")
    local f = assert(io.open(script, "w"))
    f:write([=[
local av = require "aviary"
local nn, optim, train = require "aviary.nn", require "aviary.optim", require "aviary.train"
local mode, dir, out = arg[1], arg[2], arg[3]
av.manual_seed(7)
local x, y = av.randn(48, 3, 4, 4), av.randint(1, 4, {48})
local L = {size = function() return 6 end}
function L:iter()
  local perm, b = av.randperm(48):tolist(), 0
  return function()
    b = b + 1
    if b > 6 then return nil end
    local idx = {}
    for k = (b - 1) * 8 + 1, b * 8 do idx[#idx + 1] = perm[k] + 1 end
    return {input = x:index_select(1, idx), target = y:index_select(1, idx), path = {}}
  end
end
av.manual_seed(mode == "resume" and 999 or 1)
local net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3), nn.Linear(16, 3))
local opt = optim.Adam(net:parameters(), {lr = 0.01})
local t = train.Trainer({model = net, optimizer = opt, train_loader = L, max_epochs = 3})
t:attach(train.handlers.checkpoint_last(dir, {quiet = true}))
if mode == "interrupt" then
  t:on("iteration_completed", function(_, s)
    if s.iteration == 8 then
      local p = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
      io.popen("kill -INT " .. p):close()   -- os.execute would ignore SIGINT meanwhile
      for _ = 1, 1e7 do end            -- Lua steps: the host raises "interrupted!" here
    end
  end)
end
av.manual_seed(5)
if mode == "resume" then train.resume(dir, t) end
t:run()
net:save(out)
]=])
    f:close()
    local dir = fresh_dir()
    local a, b = av_test.tmpname(".safetensors"), av_test.tmpname(".safetensors")
    local function run(mode, o)
      -- SIGINT back to its default: a background job (CI, `make test &`) inherits it ignored
      local launch = ("%s -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])'")
        :format(av_test.python_bin)
      local p = io.popen(("%s '%s' '%s' %s '%s' '%s' 2>&1; echo \"rc=$?\""):format(launch, host, script, mode, dir, o))
      local text = p:read("a")
      p:close()
      return text
    end
    local out1 = run("straight", a)
    assert.truthy(out1:find("rc=0", 1, true), out1)
    os.execute("rm -rf '" .. dir .. "'")
    local out2 = run("interrupt", b)
    assert.truthy(out2:find("interrupted", 1, true) and not out2:find("rc=0", 1, true), out2)
    local info = checkpoint.read(dir .. "/last.ckpt")
    assert.equal(info.epoch, 1)
    assert.equal(info.step, 8)
    local out3 = run("resume", b)
    assert.truthy(out3:find("rc=0", 1, true), out3)
    local ta, tb_ = av.load(a), av.load(b)
    for k, v in pairs(ta) do
      assert.equal((v:double() - tb_[k]:double()):abs():max():item(), 0, k)
    end
    os.remove(a); os.remove(b); os.remove(script)
    os.execute("rm -rf '" .. dir .. "'")
  end)

  it("the exception event gets the error; run() raises it again", function()
    local t = setup({max_epochs = 1})
    local got
    t:on("exception", function(_, s, e) got = e end)
    t:on("iteration_started", function() error("boom") end)
    assert.error_matches(function() t:run() end, "boom")
    assert.truthy(tostring(got):find("boom", 1, true))
    assert.falsy(t.state.interrupted)
  end)

  it("history.json, metrics.jsonl, progress lines and TensorBoard files of a run", function()
    local dir = fresh_dir()
    local t = setup({max_epochs = 2})
    local plog = av_test.tmpname(".log")
    local pf = assert(io.open(plog, "w"))
    train.standard_handlers(t, dir, {log_every = 2, tb_every = 1, progress = {stream = pf, tty = false, every = 2}})
    local s = t:run()
    pf:close()
    local hist = json.read(dir .. "/history.json")
    assert.equal(#hist, 2)
    assert.same({hist[2].epoch, hist[2].train_loss, hist[2].train_acc, hist[2].test_loss, hist[2].test_acc},
      {2, s.metrics.train.loss, s.metrics.train.accuracy, s.metrics.val.loss, s.metrics.val.accuracy})
    local recs = {}
    for l in read_all(dir .. "/metrics.jsonl"):gmatch("[^\n]+") do recs[#recs + 1] = json.decode(l) end
    local iters, epochs = {}, {}
    for _, r in ipairs(recs) do
      if r.type == "iteration" then iters[#iters + 1] = r.iteration else epochs[#epochs + 1] = r end
    end
    assert.same(iters, {2, 4, 6, 8, 10})
    assert.equal(#epochs, 2)
    assert.equal(epochs[2].val.accuracy, s.metrics.val.accuracy)
    assert.equal(epochs[2].train.top3, s.metrics.train.top3)
    assert.equal(epochs[1].iteration, 5)
    local names = ls(dir)
    for _, want in ipairs({"best.ckpt", "best.json", "history.json", "last.ckpt", "metrics.jsonl", "tb"}) do
      local found = false
      for _, n in ipairs(names) do if n == want then found = true end end
      assert.truthy(found, want .. " missing in " .. table.concat(names, " "))
    end
    local log = read_all(plog)
    assert.truthy(log:find("epoch 1/2 2/5 batches (16 img)", 1, true), log)
    assert.truthy(log:find("epoch 2/2 train loss", 1, true), log)
    assert.truthy(log:find("| val loss", 1, true), log)
    os.remove(plog)
    -- on a terminal: one redrawn line per epoch with images, rate, ETA, running loss and lr
    local t2 = setup({max_epochs = 1})
    pf = assert(io.open(plog, "w"))
    t2:attach(train.handlers.progress({stream = pf, tty = true}))
    t2:run()
    pf:close()
    log = read_all(plog)
    assert.truthy(log:find("\r", 1, true) and log:find("img/s", 1, true) and log:find("loss %d") and log:find("lr 0.05", 1, true), log)
    assert.truthy(log:find("40/40", 1, true) or log:find("5/5", 1, true), log)
    os.remove(plog)
    if have_py("google.protobuf") and os.execute("protoc --version >/dev/null 2>&1") then
      local ev = ls(dir .. "/tb")
      assert.equal(#ev, 1)
      local ok, out = av_test.python(av_test.root .. "/tests/parity/tb_check.py", dir .. "/tb/" .. ev[1])
      assert.truthy(ok, out)
      local by = {}
      for l in out:gmatch("[^\n]+") do
        local r = json.decode(l)
        if r.tag then by[r.tag] = by[r.tag] or {}; table.insert(by[r.tag], r) end
      end
      assert.equal(#by["train/loss_iter"], 10)
      assert.equal(by["train/loss_iter"][10].step, 10)
      assert.near(by["val/accuracy"][2].value, s.metrics.val.accuracy, 1e-7)
      assert.equal(by["val/accuracy"][2].step, 2)
      assert.near(by["train/loss"][1].value, hist[1].train_loss, 1e-6)
      assert.equal(#by["lr"], 2)
      assert.equal(by["weights/6.weight"][1].num, 4 * C)
      assert.equal(by["grads/0.weight"][2].kind, "histo")
      local img = by["train/sample_batch"] and by["train/sample_batch"][1]
      assert.truthy(img, "no sample image grid in the event file")
      assert.equal(img.step, 1)
    end
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
