--[[md
# 002 · Train

The study's main notebook fine-tunes torchvision's ImageNet ResNets on CUB-200-2011: a new
200-way head, SGD with Nesterov momentum, a step learning-rate schedule, early stopping on the
test accuracy, and a record of the loss and accuracy per epoch (`model_history`). That reached
**82% top-1 with ResNet-152 and 85% with ResNeXt-101** — on GPUs, over hours.

This notebook trains the same way with aviary's pieces — `aviary.config` (the recipe's configs),
`aviary.run` (datasets from a config), `aviary.models`, `aviary.optim`, `aviary.train` (the
`Trainer` and its standard handlers) — but small enough to finish in a few minutes on two CPU
cores: the `demo` config of `make demo` — a ResNet-18 **from scratch** at 112x112 pixels, SGD at
lr 0.03 with a cosine schedule — cut from 20 epochs to 12 (`EPOCHS` below). On the synthetic
20-species set that gives about 30% top-1 (30-32% at the best epoch in our runs; chance is 5%).
With the real archive and ImageNet weights (set `AVIARY_WEIGHTS` to a torchvision
`resnet18.safetensors`, see `docs/training.md`) the same code is the study's fine-tuning; expect
hours on a CPU.

**Where the model goes:** `notebooks/out/runs/walkthrough/` (with `--quick`:
`notebooks/out/runs/walkthrough-quick/`), a run folder exactly like `recipes/train.lua` writes
(`config.lua`, `meta.json`, `history.json`, `best.ckpt`, `last.ckpt`, `last.safetensors`,
`metrics.jsonl`, TensorBoard events in `tb/`). Notebooks 003-006 open it with `aviary.run.open`.
Running this notebook again replaces it. It needs `000_organise_data.lua` to have run.

With `--quick`: the 10-species subset of 000 (120 training images), 64x64 pixels, one epoch — a
smoke test, not a model (after 8 steps from scratch, batch norm's running statistics are far
from the data's, so the test loss can be enormous).
]]
NB = require("aviary.notebook").setup(...)
av = require "aviary"
config = require "aviary.config"
run = require "aviary.run"
data = require "aviary.data"
models = require "aviary.models"
nn = require "aviary.nn"
optim = require "aviary.optim"
train = require "aviary.train"
json = require "aviary.json"
ev = require "aviary.evaluation"
plot = require "aviary.plot"

-- %%
--[[md
## The setting
]]
CUB = os.getenv("AVIARY_CUB")        -- the extracted CUB_200_2011 folder; nil: synthetic
W = require("aviary.notebook.walkthrough").setting(NB, CUB)
CUB, SOURCE, IMAGES, DATA_DIR, RUN, exists = W.cub, W.source, W.images, W.data_dir, W.run, W.exists
W.need_data()
-- ImageNet weights (a .safetensors file with torchvision's names); nil trains from scratch
WEIGHTS = os.getenv("AVIARY_WEIGHTS")
print(("data: %s; run folder: %s; %s"):format(DATA_DIR, RUN,
  WEIGHTS and ("weights " .. WEIGHTS) or "from scratch"))

-- %%
--[[md
## The configuration

A run is described by one config table: `config.resolve` takes the defaults (the study's), the
`demo` config (`recipes/configs/demo.lua`) and a few overrides written as on the command line
(`KEY.sub=value`), and checks every key. The resolved config is saved into the run folder, so
the later notebooks rebuild the same model and data from it.
]]
EPOCHS = NB.quick and 1 or 12
nclasses = #data.ImageFolder(DATA_DIR .. "/train").classes
overrides = {"DATA.dir=" .. DATA_DIR, "MODEL.num_classes=" .. nclasses,
             "TRAIN.num_epochs=" .. EPOCHS, "DIRS.working_dir=" .. RUN:match("^(.*)/[^/]+$")}
if WEIGHTS then overrides[#overrides + 1] = "MODEL.weights=" .. WEIGHTS end
if NB.quick then
  overrides[#overrides + 1] = "DATA.crop=64"
  overrides[#overrides + 1] = "DATA.resize=73"
end
cfg = config.resolve("demo", overrides)
rows = {}
for _, l in ipairs(config.flat(cfg)) do
  local p = l.path
  if p:match("^MODEL") or p:match("^DATA%.[dcrp]") or p:match("^TRAIN%.[bno]")
      or p:match("scheduler.type") or p:match("^SYSTEM") then
    rows[#rows + 1] = {key = p, value = tostring(l.value), default = tostring(l.default)}
  end
end
display(rows, {caption = "The run's configuration (the keys that matter here)",
  columns = {"key", "value", "default"}})

-- %%
--[[md
## Data

`run.datasets(cfg)` builds both splits as the training recipe does: the training split with the
config's augmentation preset (RandomResizedCrop + flip), the test split with resize + centre crop,
and checks that they share their classes and that `MODEL.num_classes` matches. As in the study,
the test split is the validation set that picks the best epoch.
]]
av.set_num_threads(cfg.SYSTEM.threads)
-- --quick: skip timing both convolution paths on each new shape
if NB.quick then pcall(av.conv2d_algorithm, "onednn") end
av.manual_seed(cfg.SYSTEM.seed)
train_ds, test_ds = run.datasets(cfg)
T = cfg.TRAIN
train_loader = data.DataLoader(train_ds, {batch_size = T.batch_size, shuffle = true,
  num_workers = T.num_workers, seed = cfg.SYSTEM.seed})
test_loader = data.DataLoader(test_ds, {batch_size = T.batch_size,
  num_workers = T.num_workers, seed = cfg.SYSTEM.seed})
print(("%d classes; %d training images (%d batches of %d), %d test images; %d px crops")
  :format(#train_ds.classes, train_ds:size(), train_loader:size(), T.batch_size,
    test_ds:size(), cfg.DATA.crop))

-- %%
--[[md
## The model

`models.create` builds torchvision's ResNet-18 with torchvision's parameter names (so weights
move both ways) and a new head of `num_classes` outputs. With ImageNet weights the 1000-class head
is left out (`ignore_head`) and only the new head starts at random — the study's fine-tuning.
]]
net = models.create(cfg.MODEL.name, {num_classes = cfg.MODEL.num_classes,
  weights = cfg.MODEL.weights, ignore_head = cfg.MODEL.ignore_head})
nparams = 0
for _, p in ipairs(net:parameters()) do nparams = nparams + p:numel() end
print(("%s: %d parameter tensors, %.2f M parameters; head '%s' -> %d classes"):format(
  cfg.MODEL.name, #net:parameters(), nparams / 1e6, net.head_name, cfg.MODEL.num_classes))

-- %%
--[[md
## Optimiser, schedule, loss

The study's optimiser is SGD with Nesterov momentum 0.9. Training from scratch wants a larger
learning rate than fine-tuning (there are no pretrained weights to protect), and a cosine decay
to zero over the epochs replaces the study's StepLR(7, 0.1).
]]
O = T.optimizer
opt = optim.SGD(net:parameters(), {lr = O.lr, momentum = O.momentum, nesterov = O.nesterov,
  weight_decay = O.weight_decay})
sched = optim.lr_scheduler.CosineAnnealingLR(opt, {T_max = T.num_epochs})
crit = nn.CrossEntropyLoss({label_smoothing = T.loss.label_smoothing})
print(("SGD lr %g, momentum %g, Nesterov %s, weight decay %g; cosine schedule over %d epochs")
  :format(O.lr, O.momentum, tostring(O.nesterov), O.weight_decay, T.num_epochs))

-- %%
--[[md
## Training

The `Trainer` runs the epochs: forward, cross-entropy, backward, SGD step, then a pass over the
test split under `no_grad`. `train.standard_handlers` attaches what the recipe attaches: the last
and best checkpoints (best by test accuracy), `history.json` (the study's `model_history`),
`metrics.jsonl`, TensorBoard events (`tensorboard --logdir notebooks/out/runs`) and a NaN guard.
Our own handler prints one line per epoch: any function can listen to the trainer's events. This
cell takes a few minutes on two idle cores (15-20 s per epoch), far longer on a busy machine.
]]
os.execute("rm -rf '" .. RUN .. "' && mkdir -p '" .. RUN .. "'")
do
  local f = assert(io.open(RUN .. "/config.lua", "w"))
  f:write(config.serialize(cfg, "the walkthrough run (notebooks/002_train.lua)"))
  f:close()
end
json.write(RUN .. "/meta.json", {config = "demo", notebook = NB.name, quick = NB.quick,
  aviary_version = av._VERSION, started = os.date("!%Y-%m-%dT%H:%M:%SZ"), seed = cfg.SYSTEM.seed,
  threads = cfg.SYSTEM.threads, device = cfg.SYSTEM.device, dataset = {dir = DATA_DIR,
  train = train_ds:size(), test = test_ds:size(), classes = #train_ds.classes}})
trainer = train.Trainer({model = net, optimizer = opt, criterion = crit, scheduler = sched,
  train_loader = train_loader, val_loader = test_loader, max_epochs = T.num_epochs,
  num_classes = cfg.MODEL.num_classes})
train.standard_handlers(trainer, RUN, {checkpoint_metric = "val_accuracy", progress = false})
trainer:on("validation_completed", function(_, s)
  local tr, va = s.metrics.train, s.metrics.val
  print(("epoch %2d/%d  train loss %.3f acc %4.1f%% | test loss %.3f acc %4.1f%% top-5 %4.1f%%"
    .. " | %.0f s"):format(s.epoch, s.max_epochs, tr.loss, 100 * tr.accuracy, va.loss,
    100 * va.accuracy, 100 * va.top5, tr.time + va.time))
end)
t0 = av.clock()
state = trainer:run()
train_seconds = av.clock() - t0
train_loader:close(); test_loader:close()
net:save(RUN .. "/last.safetensors")
best = state.best or json.read(RUN .. "/best.json")[1]
print(("%d epoch%s in %.0f s (%.1f s per epoch)"):format(state.epoch,
  state.epoch == 1 and "" or "s", train_seconds, train_seconds / state.epoch))
print(("best test accuracy %.1f%% at epoch %d (chance %.0f%%)"):format(100 * best.value,
  best.epoch, 100 / cfg.MODEL.num_classes))

-- %%
--[[md
## The curves

`history.json` holds one record per epoch — the study's `model_history` — from which the study
plots the loss and the accuracy of both splits. A test loss that rises while the training loss
falls is overfitting; from scratch on a few hundred images the gap opens early.
]]
history = json.read(RUN .. "/history.json")
display(history, {caption = "history.json: one record per epoch",
  columns = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr"}})
curves = ev.plot_curves(history, NB.files .. "/curves.png",
  {title = ("%s on %s"):format(cfg.MODEL.name, DATA_DIR)})
display(curves, {caption = "Loss and top-1 accuracy per epoch, training and test splits"})
ep, lr = {}, {}
for i, h in ipairs(history) do ep[i], lr[i] = h.epoch, h.lr end
display(plot.lines{series = {{x = ep, y = lr, label = "learning rate", marker = "o"}},
  title = "Learning rate per epoch", xlabel = "epoch", ylabel = "lr", width = 700,
  height = 360, legend = false}, {caption = "The cosine schedule"})

-- %%
--[[md
The run folder now holds everything the next notebooks need; `003_validate.lua` judges the best
checkpoint species by species.
]]
p = io.popen("ls -l '" .. RUN .. "' | tail -n +2 | awk '{print $5, $9}'")
print(p:read("a"))
p:close()
