-- recipes/train.lua and aviary.config: config errors (typo → nearest key, wrong type, unknown
-- config), data errors that say what to do, the run folder (refused when it exists, --overwrite
-- moves it aside), a tiny end-to-end run on a synthetic set, a SIGKILL mid-epoch then --resume
-- ending with the uninterrupted run's weights, and a checkpoint written onto a full disk.
local av = require "aviary"
local config = require "aviary.config"
local json = require "aviary.json"
local checkpoint = require "aviary.checkpoint"

local root = av_test.root
local host = root .. "/bin/aviary"
local recipe = root .. "/recipes/train.lua"

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function exists(p) return os.execute("test -e " .. sh(p)) == true end
local function read_all(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function ls(dir)
  local p = io.popen("ls -1 " .. sh(dir) .. " 2>/dev/null")
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

-- conv kernels fixed (no timing-based choice) so two processes compute the same bits
local conv_algo = exists("/usr/include/oneapi/dnnl/dnnl.h") and "onednn" or "im2col"
local env = ("OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} AVIARY_CONV_ALGO=%s "):format(conv_algo)

local function command(args)
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = sh(a) end
  return env .. sh(host) .. " " .. sh(recipe) .. " " .. table.concat(parts, " ")
end

-- runs the recipe; returns exit status, output (stdout + stderr)
local function run(args)
  local p = io.popen(command(args) .. " 2>&1; echo \"rc=$?\"")
  local text = p:read("a")
  p:close()
  local rc = tonumber(text:match("rc=(%d+)%s*$"))
  return rc, text
end

-- the tiny synthetic set, made once
local tmp = av_test.tmpname("_recipe")
local data_dir = tmp .. "/images"
local models_dir = tmp .. "/models"
local function ensure_data()
  if exists(data_dir .. "/train.txt") then return end
  os.execute("mkdir -p " .. sh(tmp))
  require("aviary.data.synthetic").generate({out = tmp .. "/syn", classes = 3, per_class = 6, size = "96x72", progress = false, jobs = 1})
  require("aviary.data.cub").prepare(tmp .. "/syn/CUB_200_2011", data_dir, {progress = false})
end

-- the small run's settings: resnet18 at 48 px, batches of 2 (5 per epoch), 1 thread, no workers' race
local function small(extra)
  local a = {"--config", "resnet18", "DATA.dir=" .. data_dir, "DIRS.working_dir=" .. models_dir, "MODEL.num_classes=3",
             "DATA.crop=48", "DATA.resize=56", "TRAIN.batch_size=2", "TRAIN.num_epochs=3", "TRAIN.optimizer.lr=0.01",
             "SYSTEM.threads=1", "TRAIN.num_workers=1", "--quiet"}
  for _, x in ipairs(extra or {}) do a[#a + 1] = x end
  return a
end

local function load_weights(p)
  local t = av.load(p)
  return t
end
local function same_tensors(a, b)
  local n = 0
  for k, t in pairs(a) do
    if not b[k] then return false, "missing " .. k end
    local d = (t:double() - b[k]:double()):abs():max():item()
    if d ~= 0 then return false, ("%s differs by %g"):format(k, d) end
    n = n + 1
  end
  for k in pairs(b) do if not a[k] then return false, "extra " .. k end end
  return n > 0, n
end

describe("aviary.config", function()
  it("defaults are the study's", function()
    local d = config.defaults()
    assert.equal(d.TRAIN.optimizer.type, "SGD")
    assert.equal(d.TRAIN.optimizer.lr, 1e-3)
    assert.equal(d.TRAIN.optimizer.momentum, 0.9)
    assert.equal(d.TRAIN.optimizer.nesterov, true)
    assert.equal(d.TRAIN.scheduler.type, "StepLR")
    assert.equal(d.TRAIN.scheduler.step_size, 7)
    assert.equal(d.TRAIN.scheduler.gamma, 0.1)
    assert.equal(d.TRAIN.batch_size, 16)
    assert.equal(d.TRAIN.num_epochs, 40)
    assert.equal(d.TRAIN.early_stopping.patience, 5)
    assert.equal(d.DATA.crop, 224)
    assert.equal(d.DATA.resize, 256)
    assert.equal(d.MODEL.num_classes, 200)
  end)

  it("every shipped config resolves; inception_v3 is at 299 / 512", function()
    local names = config.list()
    for _, n in ipairs({"resnet18", "resnet34", "resnet50", "resnet152", "resnext101_32x8d", "googlenet",
                        "inception_v3", "vgg16_bn", "mobilenet_v2", "demo"}) do
      local found = false
      for _, m in ipairs(names) do if m == n then found = true end end
      assert.truthy(found, "missing config " .. n)
      local c = config.resolve(n)
      assert.equal(c.MODEL.name == n or n == "demo", true, n)
    end
    local c = config.resolve("inception_v3")
    assert.equal(c.DATA.crop, 299)
    assert.equal(c.DATA.resize, 512)
  end)

  it("overrides are typed by the default's type", function()
    local c = config.resolve("resnet50", {"TRAIN.optimizer.lr=0.01", "TRAIN.batch_size=8", "MODEL.freeze_backbone=true",
                                          "DATA.preset=aggressive", "TRAIN.grad_clip=5", "MODEL.weights=w.safetensors"})
    assert.equal(c.TRAIN.optimizer.lr, 0.01)
    assert.equal(math.type(c.TRAIN.batch_size), "integer")
    assert.equal(c.TRAIN.batch_size, 8)
    assert.equal(c.MODEL.freeze_backbone, true)
    assert.equal(c.DATA.preset, "aggressive")
    assert.equal(c.TRAIN.grad_clip, 5)
    assert.equal(c.MODEL.weights, "w.safetensors")
  end)

  it("a typo in a key names the nearest valid key (file and command line)", function()
    assert.error_matches(function() config.resolve("resnet50", {"TRAIN.optimzer.lr=0.1"}) end, "TRAIN.optimizer")
    assert.error_matches(function() config.resolve("resnet50", {"TRAIN.optimizer.lrr=0.1"}) end, "did you mean 'TRAIN.optimizer.lr'? nearest keys in TRAIN.optimizer: lr,")
    assert.error_matches(function() config.resolve({TRAIN = {batchsize = 4}}) end, "batch_size")
    assert.error_matches(function() config.resolve({TRAIN = {batchsize = 4}}) end, "unknown key 'TRAIN.batchsize'")
    assert.error_matches(function() config.resolve({MODLE = {}}) end, "'MODEL'")
    assert.error_matches(function() config.resolve({TRAIN = {optimizer = {momentun = 0.5}}}) end, "momentum")
  end)

  it("a wrong type names the key and the expected type", function()
    assert.error_matches(function() config.resolve("resnet50", {"TRAIN.batch_size=abc"}) end, "TRAIN.batch_size expects a integer")
    assert.error_matches(function() config.resolve("resnet50", {"TRAIN.batch_size=2.5"}) end, "TRAIN.batch_size expects an integer")
    assert.error_matches(function() config.resolve("resnet50", {"MODEL.freeze_backbone=maybe"}) end, "MODEL.freeze_backbone expects a boolean")
    assert.error_matches(function() config.resolve({TRAIN = {optimizer = {lr = "0.1"}}}) end, "TRAIN.optimizer.lr must be a number")
    assert.error_matches(function() config.resolve({DATA = {crop = 22.5}}) end, "DATA.crop must be an integer")
    assert.error_matches(function() config.resolve({TRAIN = {optimizer = {type = "sgd"}}}) end, "did you mean 'SGD'")
    assert.error_matches(function() config.resolve({MODEL = {name = "resnet5"}}) end, "did you mean 'resnet50'")
    assert.error_matches(function() config.resolve({TRAIN = {batch_size = 0}}) end, "TRAIN.batch_size must be positive")
  end)

  it("an unknown config name suggests the nearest", function()
    assert.error_matches(function() config.resolve("resnt50") end, "unknown config 'resnt50' (did you mean 'resnet50'?")
  end)

  it("the resolved config written back reads back the same", function()
    local c = config.resolve("inception_v3", {"TRAIN.optimizer.lr=0.0123", "TRAIN.grad_clip=2.5"})
    local p = av_test.tmpname(".lua")
    local f = assert(io.open(p, "w"))
    f:write(config.serialize(c, "a header"))
    f:close()
    local back = config.resolve(p)
    os.remove(p)
    assert.same(back, c)
  end)
end)

describe("recipes/train.lua", function()
  it("config errors on the command line: nearest key, wrong type, unknown config (exit status 1)", function()
    local rc, out = run({"--config", "resnet50", "TRAIN.optimzer.lr=0.1"})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("unknown key 'TRAIN.optimzer.lr' (did you mean 'TRAIN.optimizer.lr'? nearest keys in TRAIN: optimizer,", 1, true), out)
    rc, out = run({"--config", "resnet50", "TRAIN.num_epochs=ten"})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("TRAIN.num_epochs expects a integer", 1, true) or out:find("TRAIN.num_epochs expects an integer", 1, true), out)
    rc, out = run({"--config", "resnet5"})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("unknown config 'resnet5' (did you mean 'resnet50'?", 1, true), out)
    rc, out = run({"--confg", "resnet50"})
    assert.equal(rc, 2, out)
    assert.truthy(out:find("did you mean '--config'", 1, true), out)
  end)

  it("a missing data folder or a wrong layout says what to do", function()
    local rc, out = run({"--config", "resnet50", "DATA.dir=" .. tmp .. "/nowhere", "DIRS.working_dir=" .. models_dir})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("does not exist", 1, true) and out:find("prepare_cub.lua", 1, true)
      and out:find("make_synthetic_cub.lua", 1, true), out)
    ensure_data()
    rc, out = run({"--config", "resnet50", "DATA.dir=" .. tmp .. "/syn/CUB_200_2011", "DIRS.working_dir=" .. models_dir})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("has no 'train' folder", 1, true) and out:find("DATA.format='cub'", 1, true), out)
    rc, out = run({"--config", "resnet50", "DATA.dir=" .. data_dir, "DIRS.working_dir=" .. models_dir})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("MODEL.num_classes=3", 1, true), out)
    assert.falsy(exists(models_dir), "no run folder is made for a failed start")
  end)

  local straight = models_dir .. "/straight"
  it("a tiny end-to-end run writes the whole run folder", function()
    ensure_data()
    local rc, out = run(small({"--run-name", "straight"}))
    assert.equal(rc, 0, out)
    for _, f in ipairs({"config.lua", "meta.json", "history.json", "metrics.jsonl", "last.ckpt", "best.ckpt", "best.json",
                        "last.safetensors"}) do
      assert.truthy(exists(straight .. "/" .. f), "missing " .. f .. "\n" .. out)
    end
    local tb = ls(straight .. "/tb")
    assert.truthy(#tb == 1 and tb[1]:match("^events%.out%.tfevents%."), "tb/: " .. table.concat(tb, " "))
    local h = json.read(straight .. "/history.json")
    assert.equal(#h, 3)
    for i, r in ipairs(h) do
      assert.equal(r.epoch, i)
      assert.truthy(r.train_loss and r.test_acc and r.lr, "history row " .. i)
    end
    local m = json.read(straight .. "/meta.json")
    assert.equal(m.seed, 1)
    assert.equal(m.device, "cpu")
    assert.equal(m.dataset.train, 9)
    assert.equal(m.dataset.test, 9)
    assert.truthy(m.dataset.files_hash:match("^fnv1a64:%x+$"), m.dataset.files_hash)
    assert.truthy(m.started and m.aviary_version and m.host, "meta fields")
    local c = config.resolve(straight .. "/config.lua")
    assert.equal(c.DATA.crop, 48)
    assert.equal(c.TRAIN.optimizer.lr, 0.01)
    assert.truthy(out:find("run folder: " .. straight, 1, true), out)
    assert.truthy(out:find("best val_accuracy [%d.]+%% at epoch %d of 3"), out)
    local info = checkpoint.read(straight .. "/best.ckpt")
    assert.truthy(info.metadata.best and info.metadata.best.metric == "val_accuracy", "best.ckpt metadata")
  end)

  it("steps every scheduler type: per epoch, on a metric, and per batch", function()
    ensure_data()
    local lrs = {}
    for _, ty in ipairs({"ExponentialLR", "ReduceLROnPlateau", "OneCycleLR"}) do
      local rc, out = run(small({"--run-name", "sched-" .. ty, "TRAIN.num_epochs=2", "TRAIN.scheduler.type=" .. ty,
                                 "TRAIN.scheduler.gamma=0.5", "TRAIN.scheduler.patience=0", "TRAIN.scheduler.max_lr=0.05"}))
      assert.equal(rc, 0, out)
      local h = json.read(models_dir .. "/sched-" .. ty .. "/history.json")
      assert.equal(#h, 2, ty)
      lrs[ty] = {h[1].lr, h[2].lr}
    end
    -- ExponentialLR halves the lr after each epoch
    assert.truthy(math.abs(lrs.ExponentialLR[2] / lrs.ExponentialLR[1] - 0.5) < 1e-9,
      ("ExponentialLR lrs %g, %g"):format(lrs.ExponentialLR[1], lrs.ExponentialLR[2]))
    -- OneCycleLR moves the lr every batch: after one epoch of five it is neither the start nor the peak
    local o = lrs.OneCycleLR[1]
    assert.truthy(o ~= 0.01 and o > 0.05 / 25 and o <= 0.05, "OneCycleLR lr after epoch 1: " .. tostring(o))
    assert.truthy(lrs.ReduceLROnPlateau[1] <= 0.01, "ReduceLROnPlateau")
    local rc, out = run(small({"--run-name", "sched-bad", "TRAIN.scheduler.type=CosineLR"}))
    assert.truthy(rc ~= 0 and out:find("CosineAnnealingLR", 1, true), out)
  end)

  it("an existing run folder is refused without --resume or --overwrite", function()
    if not exists(straight .. "/last.ckpt") then skip("needs the end-to-end run") end
    local before = ls(straight)
    local rc, out = run(small({"--run-name", "straight"}))
    assert.equal(rc, 1, out)
    assert.truthy(out:find("already exists", 1, true) and out:find("--resume", 1, true) and out:find("--overwrite", 1, true), out)
    assert.same(ls(straight), before)
  end)

  it("--overwrite moves the old folder aside and says so", function()
    ensure_data()
    local dir = models_dir .. "/ow"
    os.execute("mkdir -p " .. sh(dir) .. " && echo keep > " .. sh(dir .. "/marker"))
    -- a weights file that does not exist stops the run right after the folder is set up
    local rc, out = run(small({"--run-name", "ow", "--overwrite", "MODEL.weights=" .. tmp .. "/none.safetensors"}))
    assert.equal(rc, 1, out)
    local aside = out:match("moved the existing [^\n]- to (%S+)")
    assert.truthy(aside and aside:find(dir .. ".old-", 1, true), out)
    assert.equal(read_all(aside .. "/marker"), "keep\n")
    assert.truthy(exists(dir .. "/config.lua"), "the new run folder")
    assert.falsy(exists(dir .. "/marker"))
    assert.truthy(out:find("cannot open weights file", 1, true), out)
  end)

  it("transfer learning: weights without their head, freeze_backbone trains only the head", function()
    ensure_data()
    local models = require "aviary.models"
    av.manual_seed(11)
    local src = models.create("resnet18", {num_classes = 1000})
    local wpath = tmp .. "/r18.safetensors"
    src:save(wpath)
    local rc, out = run(small({"--run-name", "tl", "MODEL.weights=" .. wpath, "MODEL.freeze_backbone=true",
                               "TRAIN.num_epochs=1"}))
    assert.equal(rc, 0, out)
    assert.truthy(out:find("2/62 parameter tensors trained, weights " .. wpath, 1, true), out)
    local a, b = av.load(wpath), av.load(models_dir .. "/tl/last.safetensors")
    assert.equal(b["fc.weight"]:size(1), 3)
    assert.equal((a["layer4.1.conv2.weight"] - b["layer4.1.conv2.weight"]):abs():max():item(), 0)
    assert.equal((a["conv1.weight"] - b["conv1.weight"]):abs():max():item(), 0)
    os.remove(wpath)
  end)

  it("SIGKILL mid-epoch, then --resume: the final weights equal the uninterrupted run's", function()
    if os.getenv("AV_SANITIZED") then skip("child processes under the sanitizer build are slow") end
    if not exists(straight .. "/last.safetensors") then skip("needs the end-to-end run") end
    local dir = models_dir .. "/killed"
    local log, pidf = tmp .. "/killed.log", tmp .. "/killed.pid"
    os.execute(command(small({"--run-name", "killed"})) .. " >" .. sh(log) .. " 2>&1 & echo $! > " .. sh(pidf))
    local pid = tonumber(read_all(pidf):match("%d+"))
    assert.truthy(pid, "no pid")
    local t0, killed = av.clock(), false
    while av.clock() - t0 < 60 do
      if exists(dir .. "/last.ckpt") then
        os.execute("kill -9 " .. pid)
        killed = true
        break
      end
      if not exists("/proc/" .. pid) then break end
      os.execute("sleep 0.02")
    end
    os.execute("sleep 0.2")
    assert.truthy(killed, "the run ended before its first checkpoint: " .. (exists(log) and read_all(log) or ""))
    assert.falsy(exists(dir .. "/last.safetensors"), "killed before the end")
    local done = #json.read(dir .. "/history.json")
    assert.truthy(done >= 1 and done < 3, "epochs done before the kill: " .. done)
    local rc, out = run({"--resume", dir, "--quiet"})
    assert.equal(rc, 0, out)
    assert.truthy(out:find("resumed from " .. dir .. "/last.ckpt at epoch " .. done, 1, true), out)
    local h = json.read(dir .. "/history.json")
    assert.equal(#h, 3, "history after the resume")
    for i, r in ipairs(h) do assert.equal(r.epoch, i) end
    -- only the interrupted epoch was redone: the epoch records of metrics.jsonl
    local epochs = {}
    for l in io.lines(dir .. "/metrics.jsonl") do
      local r = json.decode(l)
      if r.type == "epoch" then epochs[#epochs + 1] = r.epoch end
    end
    assert.same(epochs, {1, 2, 3})
    local ok, why = same_tensors(load_weights(dir .. "/last.safetensors"), load_weights(straight .. "/last.safetensors"))
    assert.truthy(ok, why)
    local sh_ = json.read(straight .. "/history.json")
    assert.equal(h[3].test_acc, sh_[3].test_acc)
    assert.equal(h[3].train_loss, sh_[3].train_loss)
    local m = json.read(dir .. "/meta.json")
    assert.equal(#m.resumed, 1)
  end)
end)

describe("checkpoints on a full disk", function()
  it("a failed save leaves the previous checkpoint intact", function()
    local nn = require "aviary.nn"
    local dir = av_test.tmpname("_full")
    os.execute("mkdir -p " .. sh(dir))
    local mounted = false
    local is_root = (io.popen("id -u"):read("l") == "0")
    if is_root then
      mounted = os.execute("mount -t tmpfs -o size=2m tmpfs " .. sh(dir) .. " 2>/dev/null") == true
      if not mounted then os.execute("rmdir " .. sh(dir)); skip("root without mount (no tmpfs to fill)") end
    end
    local ok, err = pcall(function()
      av.manual_seed(3)
      local net = nn.Linear(64, 32)
      local path = dir .. "/last.ckpt"
      checkpoint.save(path, {model = net, epoch = 1})
      local before = read_all(path)
      local w1 = net.weight:detach():clone()
      av.no_grad(function() net.weight:add_(1) end)
      if mounted then
        -- fill the filesystem: what is left is less than a checkpoint
        os.execute("dd if=/dev/zero of=" .. sh(dir .. "/filler") .. " bs=4k 2>/dev/null")
      else
        os.execute("chmod a-w " .. sh(dir))
      end
      local sok, serr = pcall(checkpoint.save, path, {model = net, epoch = 2})
      assert.falsy(sok, "the save onto a full disk must fail")
      assert.truthy(tostring(serr):find("cannot write", 1, true), tostring(serr))
      assert.equal(read_all(path), before, "the previous checkpoint is unchanged")
      local net2 = nn.Linear(64, 32)
      local info = checkpoint.load(path, {model = net2})
      assert.equal(info.epoch, 1)
      assert.equal((net2.weight - w1):abs():max():item(), 0)
    end)
    if mounted then os.execute("umount " .. sh(dir)) else os.execute("chmod u+w " .. sh(dir)) end
    os.execute("rm -rf " .. sh(dir))
    if not ok then error(err, 0) end
  end)
end)

os.execute("rm -rf " .. sh(tmp))
