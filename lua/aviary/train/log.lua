--- aviary.train's logging handlers: metrics.jsonl, history.json, TensorBoard
-- events and the progress display. aviary.train loads this file and calls it
-- with its handler table; use them as train.handlers.jsonl, ... (docs/training.md).
local av = require "aviary"
local json = require "aviary.json"

return function(H, helpers)
  local check_opts, finite, mkdir, warn = helpers.check_opts, helpers.finite, helpers.mkdir, helpers.warn
  ------------------------------------------------------------------------------
  -- logging handlers

  local function read_lines(path)
    local f = io.open(path, "r")
    if not f then return nil end
    local lines = {}
    for l in f:lines() do lines[#lines + 1] = l end
    f:close()
    return lines
  end

  local function numbers_of(t)
    local c = {}
    for k, v in pairs(t or {}) do if type(v) == "number" then c[k] = v end end
    return c
  end

  --- handlers.jsonl(path, {every = 50}): one JSON object per line — {"type": "iteration", epoch,
  -- iteration, batch, loss, lr, samples_per_sec, time} every `every` iterations and
  -- {"type": "epoch", epoch, iteration, lr, train = {...}, val = {...}, time} after each epoch.
  -- On a resumed run, records past the checkpoint are dropped first.
  function H.jsonl(path, opts)
    local o = check_opts("handlers.jsonl", opts, {every = 50}, 2)
    local f
    local t_start = os.time()
    local function write(rec)
      f:write(json.encode(rec), "\n")
      f:flush()
    end
    return function(t)
      t:on("started", function(_, s)
        local dir = path:match("^(.*)/[^/]*$")
        if dir then mkdir(dir) end
        if s.iteration > 0 then
          local keep = {}
          for _, l in ipairs(read_lines(path) or {}) do
            local ok, r = pcall(json.decode, l)
            if ok and type(r) == "table" and (r.iteration or 0) <= s.iteration
              and not (r.type == "epoch" and (r.epoch or 0) > s.epoch) then keep[#keep + 1] = l end
          end
          local out = assert(io.open(path .. ".tmp", "w"))
          for _, l in ipairs(keep) do out:write(l, "\n") end
          out:close()
          os.rename(path .. ".tmp", path)
        elseif f == nil then
          os.remove(path)
        end
        f = f or assert(io.open(path, "a"))
      end)
      t:on("iteration_completed", function(_, s)
        if o.every > 0 and s.iteration % o.every == 0 then
          write({type = "iteration", epoch = s.epoch, iteration = s.iteration, batch = s.epoch_iteration,
                 loss = s.last_loss, lr = s.lr, samples_per_sec = s.samples_per_sec, time = os.time() - t_start})
        end
      end)
      t:on("validation_completed", function(_, s)
        write({type = "epoch", epoch = s.epoch, iteration = s.iteration, lr = s.lr,
               train = numbers_of(s.metrics.train), val = s.metrics.val and numbers_of(s.metrics.val) or nil,
               time = os.time() - t_start})
      end)
      local function close() if f then f:close(); f = nil end end
      t:on("completed", close)
      t:on("exception", close, {priority = -1000})
    end
  end

  --- handlers.history(path): the study's model_history as JSON, rewritten atomically after each
  -- epoch: a list of {epoch, train_loss, train_acc, test_loss, test_acc, lr} (test_* from the
  -- val_loader; absent without one)
  function H.history(path)
    local rows = {}
    return function(t)
      t:on("started", function(_, s)
        rows = {}
        if s.epoch > 0 then
          local ok, old = pcall(json.read, path)
          if ok and type(old) == "table" then
            for _, r in ipairs(old) do if r.epoch <= s.epoch then rows[#rows + 1] = r end end
          end
        end
      end)
      t:on("validation_completed", function(_, s)
        local tr, va = s.metrics.train or {}, s.metrics.val
        rows[#rows + 1] = {epoch = s.epoch, train_loss = tr.loss, train_acc = tr.accuracy,
                           test_loss = va and va.loss, test_acc = va and va.accuracy, lr = s.lr}
        local dir = path:match("^(.*)/[^/]*$")
        if dir then mkdir(dir) end
        json.write(path, rows)
      end, {priority = -50})
    end
  end

  --- handlers.tensorboard(dir_or_writer, {every = 10, histograms = true}): scalars train/loss_iter
  -- and train/lr_iter every `every` iterations; per epoch train/* and val/* (loss, accuracy, top-k,
  -- f1) and lr, and histograms weights/<name> and grads/<name>
  function H.tensorboard(target, opts)
    local o = check_opts("handlers.tensorboard", opts, {every = 10, histograms = true, bins = 30}, 2)
    local tb = require "aviary.tensorboard"
    local owned = type(target) == "string"
    local w = not owned and target or nil
    local function done()
      if not w then return end
      if owned then w:close(); w = nil else w:flush() end
    end
    -- the first training batch as a PNG grid (inputs un-normalised with ImageNet's mean and std),
    -- so a run's TensorBoard shows what the network was fed
    local sampled = false
    local function sample_grid(batch, step)
      sampled = true
      local x = batch and batch.input
      if not (av.is_tensor(x) and x:dim() == 4 and x:size(2) == 3 and x:dtype() == "float32") then return end
      local image, draw = require "aviary.image", require "aviary.draw"
      local n = math.min(x:size(1), 16)
      local mean = av.tensor(image.IMAGENET_MEAN):view(1, 3, 1, 1)
      local std = av.tensor(image.IMAGENET_STD):view(1, 3, 1, 1)
      local grid = draw.make_grid(av.no_grad(function() return (x:narrow(1, 1, n) * std + mean):clamp(0, 1) end),
        {nrow = 8})
      local path = os.tmpname()
      local ok = pcall(image.save, grid, path .. ".png")
      if ok then
        local f = io.open(path .. ".png", "rb")
        local bytes = f:read("a")
        f:close()
        w:add_image("train/sample_batch", bytes, grid:size(2), grid:size(3), step)
      end
      os.remove(path .. ".png")
      os.remove(path)
    end
    return function(t)
      t:on("started", function() w = w or tb.SummaryWriter(target) end)
      t:on("iteration_completed", function(_, s)
        if not sampled then sample_grid(s.batch, s.iteration) end
        if o.every > 0 and s.iteration % o.every == 0 and finite(s.last_loss) then
          w:add_scalar("train/loss_iter", s.last_loss, s.iteration)
          if s.lr then w:add_scalar("train/lr_iter", s.lr, s.iteration) end
        end
      end)
      t:on("validation_completed", function(tr, s)
        for _, split in ipairs({"train", "val"}) do
          local m = s.metrics[split]
          if m then
            for _, k in ipairs({"loss", "accuracy", "top" .. tr.topk, "precision", "recall", "f1"}) do
              if type(m[k]) == "number" and finite(m[k]) then w:add_scalar(split .. "/" .. k, m[k], s.epoch) end
            end
          end
        end
        if s.lr then w:add_scalar("lr", s.lr, s.epoch) end
        if o.histograms then
          for name, p in tr.model:named_parameters() do
            w:add_histogram("weights/" .. name, p, s.epoch, {bins = o.bins})
            local g = p.grad
            if g ~= nil then w:add_histogram("grads/" .. name, g, s.epoch, {bins = o.bins}) end
          end
        end
        w:flush()
      end, {priority = -50})
      t:on("completed", done)
      t:on("exception", done, {priority = -1000})
    end
  end

  local function fmt_time(sec)
    if sec ~= sec or sec == math.huge then return "--:--" end
    sec = math.floor(sec + 0.5)
    if sec >= 3600 then return ("%d:%02d:%02d"):format(sec // 3600, sec % 3600 // 60, sec % 60) end
    return ("%02d:%02d"):format(sec // 60, sec % 60)
  end

  --- handlers.progress({stream = io.stderr, tty = auto, every = 0}): on a terminal a live bar per
  -- epoch (images, img/s, ETA, running loss, lr); elsewhere a plain line every `every` iterations
  -- (default: every 10% of the epoch); and one summary line per epoch
  function H.progress(opts)
    local o = check_opts("handlers.progress", opts, {stream = false, tty = "auto", every = 0, quiet = false}, 2)
    local stream = o.stream or io.stderr
    local tty = o.tty
    if tty == "auto" then tty = (not o.stream) and os.execute("test -t 2") == true end
    local have_bar, progress = pcall(require, "aviary.progress")
    have_bar = have_bar and type(progress) == "table" and type(progress.bar) == "function"
    local bar, run_loss, run_n, seen, t0, last_line
    local function extra(s)
      local l = run_n > 0 and run_loss / run_n or 0 / 0
      return ("loss %.4f lr %.3g"):format(l, s.lr or 0)
    end
    return function(t)
      t:on("epoch_started", function(tr, s)
        run_loss, run_n, seen, t0, last_line = 0, 0, 0, av.clock(), -1
        if o.quiet then return end
        local L = tr.train_loader
        local total = L.num_samples and L:num_samples() or nil
        s._progress_total = total
        if tty and have_bar then
          bar = progress.bar(total or L:size(), {label = ("epoch %d/%d"):format(s.epoch, s.max_epochs),
                                                 unit = total and "img" or "batch", stream = stream, tty = true})
          local base = bar.line
          bar.line = function(b) return base(b) .. " " .. extra(s) end
        end
      end)
      t:on("iteration_completed", function(tr, s)
        local n = s.batch and s.batch.input and s.batch.input:size(1) or 1
        seen = seen + n
        if finite(s.last_loss) then run_loss, run_n = run_loss + s.last_loss * n, run_n + n end
        if o.quiet then return end
        local total = s._progress_total
        if bar then bar:update(total and n or 1); return end
        local size = s.epoch_size or 1
        local el = av.clock() - t0
        local rate = el > 0 and seen / el or 0
        local frac = s.epoch_iteration / size
        local eta = frac > 0 and el * (1 - frac) / frac or math.huge
        local line = ("epoch %d/%d %d/%d batches (%d img) %.1f img/s eta %s %s"):format(s.epoch, s.max_epochs,
          s.epoch_iteration, size, seen, rate, fmt_time(eta), extra(s))
        if tty then
          stream:write("\r" .. line .. "\27[K"); stream:flush()
        else
          local every = o.every > 0 and o.every or math.max(1, size // 10)
          if s.epoch_iteration % every == 0 or s.epoch_iteration == size then
            stream:write(line .. "\n"); stream:flush()
          end
        end
      end)
      t:on("validation_completed", function(tr, s)
        if bar then bar:finish(); bar = nil elseif tty and not o.quiet then stream:write("\n") end
        if o.quiet then return end
        local tr_m, va = s.metrics.train or {}, s.metrics.val
        local line = ("epoch %d/%d train loss %.4f acc %.2f%%"):format(s.epoch, s.max_epochs, tr_m.loss or 0 / 0,
          100 * (tr_m.accuracy or 0 / 0))
        if va then
          line = line .. (" | val loss %.4f acc %.2f%% top%d %.2f%% f1 %.4f"):format(va.loss, 100 * va.accuracy,
            tr.topk, 100 * (va["top" .. tr.topk] or 0 / 0), va.f1 or 0 / 0)
        end
        line = line .. (" | lr %.3g | %s"):format(s.lr or 0, fmt_time(av.clock() - t0))
        stream:write(line .. "\n"); stream:flush()
      end, {priority = -60})
      t:on("completed", function(_, s)
        if bar then bar:finish(); bar = nil end
        if s.stop_reason and not o.quiet then stream:write(s.stop_reason .. "\n"); stream:flush() end
      end)
    end
  end
end
