-- The study's model validation (walkthrough 003) and feature manifold (004): a trained run judged
-- species by species on the test split.
--   bin/aviary recipes/evaluate.lua --run models/<run> [options]
--   bin/aviary recipes/evaluate.lua --weights model.safetensors --config resnet18 [KEY.sub=value ...]
-- Writes into the run folder (or --out): predictions.csv, metrics.json, plots/*.png,
-- features/<layer>.safetensors and report.html (self-contained). See docs/evaluation.md.
local av = require "aviary"
local json = require "aviary.json"

local usage = [[
usage: bin/aviary recipes/evaluate.lua --run models/<run> [options]
       bin/aviary recipes/evaluate.lua --weights FILE --config NAME|PATH [KEY.sub=value ...] --out DIR
  --run DIR            a run folder written by recipes/train.lua
  --checkpoint WHICH   best (default; falls back to last), last, or a .ckpt / .safetensors path
  --weights FILE       evaluate these weights (.safetensors or .ckpt) with --config's model and data
  --config NAME|PATH   the config for --weights (recipes/configs/NAME.lua or a path)
  --out DIR            where to write (default: the run folder)
  --layer NAME         the layer whose activations are the features (default: the head's input, e.g. avgpool)
  --batch-size N       default: the run's TRAIN.batch_size
  --workers N          loader threads (default: the run's TRAIN.num_workers)
  --perplexity P       t-SNE perplexity (default 50, as the study; capped for small test sets)
  --tsne-lr LR         t-SNE learning rate (default 150, as the study)
  --no-tsne            skip the t-SNE manifold and collage
  --pr-classes A,B     classes (1-based numbers) for the precision-recall plot
  --grid N             images in the prediction and error grids (default 24)
  --quiet              no progress bars
  --help               this text]]

local cli = require "aviary.cli"
local usage_error = cli.usage_error
local OPTIONS = {"run", "checkpoint", "weights", "config", "out", "layer", "batch-size", "workers", "perplexity",
                 "tsne-lr", "no-tsne", "pr-classes", "grid", "quiet", "help"}
local function parse_args(args)
  return cli.parse(args, {options = OPTIONS, flags = {["no-tsne"] = true, quiet = true, help = true},
    ints = {["batch-size"] = 1, workers = 0, grid = 1}, numbers = {perplexity = true, ["tsne-lr"] = true}})
end

local function pct(v) return ("%.2f%%"):format(100 * v) end

local function main(args)
  local o = parse_args(args)
  if o.help then print(usage); return 0 end
  local run = require "aviary.run"
  local config = require "aviary.config"
  local r
  if o.run then
    if o.weights then usage_error("give --run or --weights, not both") end
    r = run.open(o.run, o.overrides)
  elseif o.weights then
    if not o.config then usage_error("--weights needs --config (the model and data it was trained with)") end
    if not o.out then usage_error("--weights needs --out DIR (where to write the evaluation)") end
    r = {cfg = config.resolve(o.config, o.overrides), meta = {}, history = {}, name = o.weights:match("([^/]+)$")}
    o.checkpoint = o.weights
  else
    usage_error("--run DIR is required (or --weights FILE --config NAME --out DIR)")
  end
  local out = (o.out or r.dir):gsub("/+$", "")
  if not os.execute("mkdir -p " .. run.sh(out .. "/plots")) then error(("cannot create '%s'"):format(out), 0) end
  local cfg = r.cfg
  av.set_num_threads(cfg.SYSTEM.threads)
  run.check_data(cfg)
  local ds = run.dataset(cfg, "test")
  if ds:size() == 0 then
    error(("the test split of %s is empty: there is nothing to evaluate (is DATA.dir the prepared set?)"):format(cfg.DATA.dir), 0)
  end
  run.check_classes(cfg, ds)
  local net, info
  if o.weights then
    r.dir = out
    net, info = run.model(r, {checkpoint = o.weights})
  else
    net, info = run.model(r, {checkpoint = o.checkpoint})
  end
  local data = require "aviary.data"
  local loader = data.DataLoader(ds, {batch_size = o["batch-size"] or cfg.TRAIN.batch_size,
    num_workers = o.workers or cfg.TRAIN.num_workers, seed = cfg.SYSTEM.seed})
  print(("evaluating %s (%s, checkpoint %s) on %d test images of %s"):format(r.name, cfg.MODEL.name, info.file, ds:size(),
    cfg.DATA.dir))
  local ev = require "aviary.evaluation"
  local t0 = av.clock()
  local res = ev.predict(net, loader, {classes = ds.classes, layer = o.layer, progress = not o.quiet})
  loader:close()
  local seconds = av.clock() - t0
  local m = ev.summarize(res)
  ev.write_predictions(out .. "/predictions.csv", res)
  local layer_file = "features/" .. res.layer:gsub("[^%w%._-]", "_") .. ".safetensors"
  require("aviary.features").save(out .. "/" .. layer_file, res, {classes = json.encode(res.classes),
    model = cfg.MODEL.name, run = r.name})
  print(("top-1 %s, top-5 %s, macro F1 %.4f, log loss %.4f, ECE %.4f (%d images, %.1f s)"):format(pct(m.top1), pct(m.top5),
    m.macro.f1, m.log_loss, m.ece, m.n, seconds))

  print("drawing the plots...")
  local pr_classes
  if o["pr-classes"] then
    pr_classes = {}
    for s in o["pr-classes"]:gmatch("[^,]+") do
      local c = math.tointeger(tonumber(s))
      if not c or c < 1 or c > res.num_classes then
        usage_error(("--pr-classes: '%s' is not a class number in 1..%d"):format(s, res.num_classes))
      end
      pr_classes[#pr_classes + 1] = c
    end
  end
  local plots = ev.plots(res, m, {dir = out .. "/plots", history = r.history, pr_classes = pr_classes, grid = o.grid,
    seed = cfg.SYSTEM.seed})
  local mplots, minfo = ev.manifold(res, {dir = out .. "/plots", seed = cfg.SYSTEM.seed,
    tsne = not o["no-tsne"] and {perplexity = o.perplexity, learning_rate = o["tsne-lr"]} or false})
  for _, p in ipairs(mplots) do plots[#plots + 1] = p end

  ev.write_metrics(out .. "/metrics.json", m, {features_file = layer_file, run = r.name, model = cfg.MODEL.name, checkpoint = info.file,
    epoch = info.epoch, split = "test", data_dir = cfg.DATA.dir, classes = res.classes, layer = res.layer,
    feature_dim = res.features:size(2), seconds = seconds, created = os.date("!%Y-%m-%dT%H:%M:%SZ"),
    aviary_version = av._VERSION, manifold = minfo})
  local index = {}
  for _, p in ipairs(plots) do
    index[#index + 1] = {key = p.key, file = p.file:match("([^/]+)$"), title = p.title, caption = p.caption,
                         figure_box = p.figure_box}
  end
  json.write(out .. "/plots/index.json", index)
  local html = require("aviary.evaluation.report").build(out, {cfg = cfg, name = r.name})
  print(("wrote %s/predictions.csv, metrics.json, %d plots in plots/, %s"):format(out, #plots, layer_file))
  print("report: " .. html)
  return 0
end

cli.run("evaluate", usage, main)
