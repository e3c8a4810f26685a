-- The study's training job: fine-tune (or train from scratch) a torchvision CNN on CUB-200-2011.
--   bin/aviary recipes/train.lua --config resnet50 [KEY.sub=value ...] [--run-name NAME]
--                                [--resume models/<run>] [--overwrite]
--   make train CONFIG=resnet50 ARGS='MODEL.weights=resnet50.safetensors'
-- The config (recipes/configs/<name>.lua, or a path) merges over the defaults of
-- lua/aviary/config.lua; KEY.sub=value overrides it. Everything the run writes goes to
-- DIRS.working_dir/<run>/ (default run name <config>-<YYYYmmdd-HHMMSS>). See docs/training.md.
local av = require "aviary"
local config = require "aviary.config"
local json = require "aviary.json"

local usage = [[
usage: bin/aviary recipes/train.lua --config NAME|PATH [KEY.sub=value ...] [options]
  --config NAME        recipes/configs/NAME.lua (or a path to a config file)
  KEY.sub=value        override one key, e.g. TRAIN.optimizer.lr=0.01 MODEL.weights=resnet50.safetensors
  --run-name NAME      run folder DIRS.working_dir/NAME (default <config>-<YYYYmmdd-HHMMSS>)
  --resume DIR         continue the run in DIR (its config.lua; overrides still apply)
  --overwrite          move an existing run folder aside (to <run>.old-<time>) and start afresh
  --quiet              no progress lines (the per-epoch summary stays)
  --list               list the shipped configs
  --help               this text; the keys and their defaults are in docs/training.md]]

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function is_dir(p) return os.execute("test -d " .. sh(p)) == true end
local function exists(p) return os.execute("test -e " .. sh(p)) == true end
local function capture(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  if not p then return nil end
  local out = p:read("a")
  p:close()
  return out and out:gsub("%s+$", "") or nil
end

local cli = require "aviary.cli"
local usage_error = cli.usage_error
local current_run_dir   -- for the hint after an interruption

-- ---- arguments ---------------------------------------------------------------------------
local function parse_args(args)
  local o = cli.parse(args, {options = {"config", "resume", "run-name", "overwrite", "quiet", "list", "help"},
    flags = {overwrite = true, quiet = true, list = true, help = true}})
  o.run_name = o["run-name"]
  return o
end

-- ---- the data ----------------------------------------------------------------------------
-- FNV-1a 64 over a string (Lua integers wrap), as 16 hex digits
local function fnv1a64(s)
  local h = -3750763034362895579   -- 0xcbf29ce484222325
  for i = 1, #s do
    h = h ~ s:byte(i)
    h = h * 1099511628211
  end
  return ("%016x"):format(h)
end

--- the dataset's fingerprint: counts and a hash of the sorted "<split>/<class>/<file> <target>" list
local function fingerprint(cfg, train_ds, test_ds)
  local lines = {}
  local function add(split, ds)
    for _, s in ipairs(ds.samples) do
      local rel = s.path:sub(#cfg.DATA.dir + 2)
      lines[#lines + 1] = ("%s %s %d"):format(split, rel, s.target)
    end
  end
  add("train", train_ds)
  add("test", test_ds)
  table.sort(lines)
  return {train = #train_ds.samples, test = #test_ds.samples, classes = #train_ds.classes,
          files_hash = "fnv1a64:" .. fnv1a64(table.concat(lines, "\n"))}
end

-- ---- the run folder ----------------------------------------------------------------------
local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

local function prepare_run_dir(cfg, o, config_name)
  if o.resume then
    local dir = o.resume:gsub("/+$", "")
    if not is_dir(dir) then error(("--resume: no run folder '%s'"):format(dir), 0) end
    if not exists(dir .. "/last.ckpt") then
      error(("--resume: '%s' has no last.ckpt (the run ended before its first epoch); start it again with --overwrite"):format(dir), 0)
    end
    return dir, false
  end
  local name = o.run_name or (config_name .. "-" .. os.date("%Y%m%d-%H%M%S"))
  if name:find("/", 1, true) or name == "" or name == "." or name == ".." then
    usage_error(("--run-name must be a plain folder name, got '%s'"):format(name))
  end
  local dir = cfg.DIRS.working_dir:gsub("/+$", "") .. "/" .. name
  if exists(dir) then
    if not o.overwrite then
      error(("run folder '%s' already exists; continue it with --resume %s, start afresh with --overwrite "
        .. "(the old folder is moved aside, not deleted), or pick another --run-name"):format(dir, dir), 0)
    end
    local aside = dir .. ".old-" .. os.date("%Y%m%d-%H%M%S")
    local k = 1
    while exists(aside) do k = k + 1; aside = dir .. ".old-" .. os.date("%Y%m%d-%H%M%S") .. "-" .. k end
    local ok, err = os.rename(dir, aside)
    if not ok then error(("--overwrite: cannot move '%s' aside: %s"):format(dir, tostring(err)), 0) end
    print(("--overwrite: moved the existing %s to %s"):format(dir, aside))
  end
  if not os.execute("mkdir -p " .. sh(dir)) then error(("cannot create the run folder '%s'"):format(dir), 0) end
  return dir, true
end

local function meta_for(cfg, config_name, fp)
  local git = "git -C " .. sh((debug.getinfo(1, "S").source:match("^@(.*)/recipes/[^/]*$") or "."))
  local commit = capture(git .. " rev-parse HEAD")
  if commit == "" then commit = nil end
  local dirty = commit and capture(git .. " status --porcelain --untracked-files=no | head -1") or nil
  return {
    config = config_name, aviary_version = av._VERSION, git_commit = commit, git_dirty = dirty ~= nil and dirty ~= "" or nil,
    host = capture("hostname") or os.getenv("HOSTNAME"), started = os.date("!%Y-%m-%dT%H:%M:%SZ"),
    device = cfg.SYSTEM.device, seed = cfg.SYSTEM.seed, threads = cfg.SYSTEM.threads, dataset = fp,
    command = "bin/aviary recipes/train.lua " .. table.concat(arg, " "),
  }
end

-- ---- model, optimizer, scheduler ---------------------------------------------------------
local function build(cfg, steps_per_epoch)
  local models, nn, optim = require "aviary.models", require "aviary.nn", require "aviary.optim"
  local M, T = cfg.MODEL, cfg.TRAIN
  local weights = M.weights
  if weights == "" then weights = nil end
  local net = models.create(M.name, {num_classes = M.num_classes, weights = weights, ignore_head = M.ignore_head})
  if M.freeze_backbone then
    net:requires_grad_(false)
    net:get(net.head_name):requires_grad_(true)
  end
  if cfg.SYSTEM.device ~= "cpu" then net:to(cfg.SYSTEM.device) end
  local params = {}
  for _, p in ipairs(net:parameters()) do if p.requires_grad then params[#params + 1] = p end end
  local O = T.optimizer
  local opt
  if O.type == "SGD" then
    opt = optim.SGD(params, {lr = O.lr, momentum = O.momentum, nesterov = O.nesterov, weight_decay = O.weight_decay})
  elseif O.type == "Adam" then
    opt = optim.Adam(params, {lr = O.lr, weight_decay = O.weight_decay})
  else
    opt = optim.AdamW(params, {lr = O.lr, weight_decay = O.weight_decay})
  end
  local S = T.scheduler
  local LR = optim.lr_scheduler
  local sched, sched_opts = nil, {step = "epoch"}
  if S.type == "StepLR" then
    sched = LR.StepLR(opt, {step_size = S.step_size, gamma = S.gamma})
  elseif S.type == "ExponentialLR" then
    sched = LR.ExponentialLR(opt, {gamma = S.gamma})
  elseif S.type == "CosineAnnealingLR" then
    sched = LR.CosineAnnealingLR(opt, {T_max = T.num_epochs})
  elseif S.type == "ReduceLROnPlateau" then
    local mode = S.metric:find("loss") and "min" or "max"
    sched = LR.ReduceLROnPlateau(opt, {mode = mode, factor = S.gamma, patience = S.patience})
    sched_opts.metric = S.metric
  elseif S.type == "OneCycleLR" then
    sched = LR.OneCycleLR(opt, {max_lr = S.max_lr, epochs = T.num_epochs, steps_per_epoch = steps_per_epoch})
    sched_opts.step = "iteration"
  end
  local crit = nn.CrossEntropyLoss({label_smoothing = T.loss.label_smoothing})
  return net, opt, sched, crit, #params, sched_opts
end

-- ---- main --------------------------------------------------------------------------------
local function main(args)
  local o = parse_args(args)
  if o.help then print(usage); return 0 end
  if o.list then print(table.concat(config.list(), "\n")); return 0 end
  local cfg, config_name
  if o.resume then
    local saved = o.resume:gsub("/+$", "") .. "/config.lua"
    if not exists(saved) then error(("--resume: '%s' has no config.lua (is it a run folder?)"):format(o.resume), 0) end
    cfg = config.resolve(saved, o.overrides)
    local ok, m = pcall(json.read, o.resume:gsub("/+$", "") .. "/meta.json")
    config_name = ok and type(m) == "table" and m.config or o.resume
  else
    if not o.config then usage_error("--config is required (configs: " .. table.concat(config.list(), ", ") .. ")") end
    cfg = config.resolve(o.config, o.overrides)
    config_name = o.config:match("([^/]+)%.lua$") or o.config
  end
  local run = require "aviary.run"
  run.check_data(cfg)
  av.set_num_threads(cfg.SYSTEM.threads)
  av.manual_seed(cfg.SYSTEM.seed)
  local train_ds, test_ds = run.datasets(cfg)
  local fp = fingerprint(cfg, train_ds, test_ds)
  local run_dir, fresh = prepare_run_dir(cfg, o, config_name)
  current_run_dir = run_dir
  if fresh then
    write_atomic(run_dir .. "/config.lua", config.serialize(cfg, ("resolved config of run %s (%s)"):format(run_dir, os.date("!%Y-%m-%dT%H:%M:%SZ"))))
    json.write(run_dir .. "/meta.json", meta_for(cfg, config_name, fp))
  else
    local ok, m = pcall(json.read, run_dir .. "/meta.json")
    m = ok and type(m) == "table" and m or {}
    if m.dataset and m.dataset.files_hash ~= fp.files_hash then
      io.stderr:write(("warning: the dataset differs from the run's (%s, now %s)\n"):format(m.dataset.files_hash, fp.files_hash))
    end
    m.resumed = m.resumed or {}
    m.resumed[#m.resumed + 1] = {time = os.date("!%Y-%m-%dT%H:%M:%SZ"), overrides = #o.overrides > 0 and o.overrides or nil}
    json.write(run_dir .. "/meta.json", m)
  end

  local data, train = require "aviary.data", require "aviary.train"
  local T = cfg.TRAIN
  -- page-locked batches when training on the GPU: their copies to the device run asynchronously
  local pin = cfg.SYSTEM.device ~= "cpu"
  local train_loader = data.DataLoader(train_ds, {batch_size = T.batch_size, shuffle = true, num_workers = T.num_workers,
                                                  seed = cfg.SYSTEM.seed, pin_memory = pin})
  local test_loader = data.DataLoader(test_ds, {batch_size = T.batch_size, num_workers = T.num_workers, seed = cfg.SYSTEM.seed,
    pin_memory = pin})
  local net, opt, sched, crit, ntrain, sched_opts = build(cfg, train_loader:size())
  print(("%s: %s, %d classes, %d/%d parameter tensors trained%s; %d train / %d test images at %d px; %s, %d threads, seed %d")
    :format(fresh and "run" or "resuming", cfg.MODEL.name, cfg.MODEL.num_classes, ntrain, #net:parameters(),
      cfg.MODEL.weights and cfg.MODEL.weights ~= "" and (", weights " .. cfg.MODEL.weights) or " (from scratch)",
      fp.train, fp.test, cfg.DATA.crop, cfg.SYSTEM.device, cfg.SYSTEM.threads, cfg.SYSTEM.seed))
  print("writing to " .. run_dir)
  io.stdout:flush()
  local t = train.Trainer({model = net, optimizer = opt, criterion = crit, scheduler = sched,
    scheduler_step = sched_opts.step, scheduler_metric = sched_opts.metric,
    train_loader = train_loader, val_loader = test_loader, max_epochs = T.num_epochs, grad_clip = T.grad_clip,
    device = cfg.SYSTEM.device ~= "cpu" and cfg.SYSTEM.device or nil, num_classes = cfg.MODEL.num_classes,
    amp = T.amp})
  local es = T.early_stopping
  train.standard_handlers(t, run_dir, {checkpoint_metric = es.metric,
    early_stopping = es.patience > 0 and {patience = es.patience, metric = es.metric} or nil,
    progress = o.quiet and {quiet = true} or true})
  if not fresh then
    local info = train.resume(run_dir, t)
    print(("resumed from %s at epoch %d, iteration %d%s"):format(t.state.resumed_from, t.state.epoch, t.state.iteration,
      info.metadata and info.metadata.mid_epoch and (" (mid-epoch, batch " .. info.metadata.mid_epoch.batches_done .. ")") or ""))
  end
  local t0 = av.clock()
  local s = t:run()
  train_loader:close(); test_loader:close()
  net:save(run_dir .. "/last.safetensors")
  local best = s.best
  if not best then
    local ok, b = pcall(json.read, run_dir .. "/best.json")
    best = ok and type(b) == "table" and b[1] or nil
  end
  print("run folder: " .. run_dir)
  if best then
    local v = best.value
    local shown = es.metric:find("accuracy") and ("%.2f%%"):format(100 * v) or ("%.4g"):format(v)
    print(("best %s %s at epoch %d of %d (%s%.0f s)"):format(es.metric, shown, best.epoch, s.epoch,
      s.stop_reason and (s.stop_reason .. "; ") or "", av.clock() - t0))
  else
    print(("no best epoch (%d epochs run)"):format(s.epoch))
  end
  return 0
end

cli.run("train", usage, main, {on_error = function()
  if current_run_dir and os.execute("test -e " .. sh(current_run_dir .. "/last.ckpt")) == true then
    io.stderr:write(("continue with: bin/aviary recipes/train.lua --resume %s\n"):format(current_run_dir))
  end
end})
