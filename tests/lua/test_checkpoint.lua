-- aviary.checkpoint and aviary.json: exact resume (N steps, save, load, M
-- steps equals N+M straight, bit for bit), what a checkpoint holds, and the
-- errors for damaged files and mismatched models or optimizers.
local av = require "aviary"
local nn = require "aviary.nn"
local optim = require "aviary.optim"
local sched = require "aviary.optim.lr_scheduler"
local checkpoint = require "aviary.checkpoint"
local json = require "aviary.json"

local function build(seed)
  av.manual_seed(seed)
  return nn.Sequential(nn.Conv2d(3, 8, 3, {padding = 1}), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Dropout(0.3), nn.Linear(8 * 4 * 4, 5))
end

local function make_opt(kind, model)
  if kind == "sgd" then
    local o = optim.SGD(model:parameters(), {lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 1e-4})
    return o, sched.StepLR(o, {step_size = 3, gamma = 0.5})
  end
  local o = optim.Adam({{params = model[1]:parameters(), lr = 1e-3}, {params = model[7]:parameters()}}, {lr = 3e-3})
  return o, sched.CosineAnnealingLR(o, {T_max = 7})
end

-- one step: a batch drawn from the generator (so its state matters), dropout on
local function steps(model, opt, sc, n)
  model:train()
  for _ = 1, n do
    local x = av.randn(4, 3, 8, 8)
    local y = av.randint(1, 6, {4})
    opt:zero_grad()
    local loss = av.cross_entropy(model(x), y, {label_smoothing = 0.1})
    loss:backward()
    opt:step()
    sc:step()
  end
end

local function identical(a, b)
  local sa, sb = a:state_dict(), b:state_dict()
  for k, t in pairs(sa) do
    local d = (t:double() - sb[k]:double()):abs():max():item()
    if d ~= 0 then return false, ("%s differs by %g"):format(k, d) end
  end
  return true
end

describe("checkpoint resume", function()
  for _, kind in ipairs({"sgd", "adam"}) do
    it(kind .. ": N steps, save, load, M steps equals N+M straight, bit for bit", function()
      local threads = av.get_num_threads()
      local straight = build(1)
      local o1, s1 = make_opt(kind, straight)
      av.manual_seed(100)
      steps(straight, o1, s1, 9)

      local first = build(1)
      local o2, s2 = make_opt(kind, first)
      av.manual_seed(100)
      steps(first, o2, s2, 5)
      local path = av_test.tmpname(".ckpt")
      checkpoint.save(path, {model = first, optimizer = o2, scheduler = s2, epoch = 2, step = 5, metadata = {note = "half way"}})
      av.randn(1000) -- disturb the generator: the checkpoint must restore it

      local resumed = build(77)
      local o3, s3 = make_opt(kind, resumed)
      local info = checkpoint.load(path, {model = resumed, optimizer = o3, scheduler = s3})
      assert.equal(2, info.epoch)
      assert.equal(5, info.step)
      assert.equal("half way", info.metadata.note)
      assert.equal(o2.param_groups[1].lr, o3.param_groups[1].lr)
      steps(resumed, o3, s3, 4)
      local same, why = identical(straight, resumed)
      assert.truthy(same, why)
      assert.equal(threads, av.get_num_threads())
      os.remove(path)
    end)
  end

  it("holds weights with PyTorch's names, the optimizer, the scheduler and the generator", function()
    local m = build(3)
    local o, s = make_opt("sgd", m)
    steps(m, o, s, 2)
    local path = av_test.tmpname(".ckpt")
    checkpoint.save(path, {model = m, optimizer = o, scheduler = s, epoch = 1, step = 2})
    local info, tensors = checkpoint.read(path)
    assert.equal("aviary.checkpoint", info.format)
    assert.truthy(tensors["model.0.weight"] ~= nil)
    assert.truthy(tensors["model.1.num_batches_tracked"] ~= nil)
    assert.truthy(tensors["optimizer.1.momentum_buffer"] ~= nil)
    assert.same({16}, tensors.rng:size())
    assert.equal("StepLR", info.scheduler.type)
    assert.equal(2, info.scheduler.state.last_epoch)
    assert.same(m:state_dict_keys(), info.model.keys)
    os.remove(path)
  end)

  it("leaves no temporary file and keeps the old checkpoint when a save fails", function()
    local m = build(4)
    local path = av_test.tmpname(".ckpt")
    checkpoint.save(path, {model = m, epoch = 1})
    local bad = {model = m, epoch = 2, metadata = {f = function() end}}
    assert.error_matches(function() checkpoint.save(path, bad) end, "cannot encode a function")
    assert.equal(1, checkpoint.read(path).epoch)
    assert.error_matches(function() checkpoint.save("/nonexistent-dir/x.ckpt", {model = m}) end, "cannot write '/nonexistent-dir/x.ckpt'")
    os.remove(path)
  end)

  it("rejects damaged files and mismatched models, optimizers and schedulers", function()
    local m = build(5)
    local o, s = make_opt("sgd", m)
    steps(m, o, s, 1)
    local path = av_test.tmpname(".ckpt")
    checkpoint.save(path, {model = m, optimizer = o, scheduler = s})
    -- another model
    local other = nn.Sequential(nn.Linear(2, 2))
    assert.error_matches(function() checkpoint.load(path, {model = other}) end, "0.weight: checkpoint has 8x3x3x3, the model has 2x2")
    -- another optimizer type or parameter set
    local m2 = build(5)
    local adam = optim.Adam(m2:parameters())
    assert.error_matches(function() checkpoint.load(path, {model = m2, optimizer = adam}) end, "but the optimizer is optim.Adam")
    local sgd_small = optim.SGD(other:parameters(), {lr = 0.1, momentum = 0.9})
    assert.error_matches(function() checkpoint.load(path, {optimizer = sgd_small}) end, "parameters in the state")
    local o2 = optim.SGD(m2:parameters(), {lr = 0.1})
    assert.error_matches(function() checkpoint.load(path, {scheduler = sched.ExponentialLR(o2, {gamma = 0.9})}) end,
      "it holds StepLR state, but the scheduler is ExponentialLR")
    assert.error_matches(function() checkpoint.load(path, {modle = m2}) end, "did you mean 'model'")
    -- truncated
    local f = io.open(path, "rb")
    local bytes = f:read("a")
    f:close()
    f = io.open(path, "wb")
    f:write(bytes:sub(1, #bytes - 100))
    f:close()
    assert.error_matches(function() checkpoint.load(path, {model = m2}) end, "is damaged or not a checkpoint")
    -- weights only
    m:save(path)
    assert.error_matches(function() checkpoint.load(path, {model = m2}) end, "without checkpoint metadata")
    os.remove(path)
    assert.error_matches(function() checkpoint.load(path, {model = m2}) end, "cannot open")
  end)
end)

describe("aviary.json", function()
  it("round-trips floats exactly and keeps integers integers", function()
    local v = {a = 0.1 * 3, b = 3, c = -2.5e-300, d = {1, 2.0, "x"}, e = true, f = 1 / 3, g = math.huge, h = "q\"\n\\é"}
    local back = json.decode(json.encode(v))
    assert.equal(v.a, back.a)
    assert.equal("integer", math.type(back.b))
    assert.equal("float", math.type(back.d[2]))
    assert.equal(v.c, back.c)
    assert.equal(v.f, back.f)
    assert.equal(math.huge, back.g)
    assert.equal(v.h, back.h)
    assert.equal(true, back.e)
    local nan = json.decode(json.encode({x = 0 / 0})).x
    assert.truthy(nan ~= nan)
  end)

  it("reads what Python writes and reports errors with a line number", function()
    local t = json.decode('{"a": [1, 2, {"b": null}], "c": "\\u00e9\\ud83d\\ude00", "d": -0.5e2}')
    assert.equal(2, t.a[2])
    assert.equal("é😀", t.c)
    assert.equal(-50.0, t.d)
    assert.error_matches(function() json.decode('{"a": 1,\n "b": }') end, "at line 2")
    assert.error_matches(function() json.decode('[1, 2') end, "expected ',' or ']'")
    assert.error_matches(function() json.decode('{} x') end, "trailing characters")
    assert.equal("[]", json.encode(setmetatable({}, json.array_mt)))
    assert.equal('{"a":1,"b":[true,false]}', json.encode({b = {true, false}, a = 1}))
  end)
end)
