-- Several evaluated runs side by side (the study's comparison of ResNet depths and ResNeXt).
--   bin/aviary recipes/compare.lua models/<runA> models/<runB> [...] [--out DIR]
-- Each run must have been evaluated (recipes/evaluate.lua writes its metrics.json). Writes
-- DIR/compare_metrics.png (accuracy and macro precision/recall/F1 per run), DIR/compare_curves.png
-- (test accuracy and loss per epoch), DIR/compare.json and DIR/compare.html.
-- DIR defaults to models/compare-<YYYYmmdd-HHMMSS>.
local json = require "aviary.json"

local usage = [[
usage: bin/aviary recipes/compare.lua RUN_DIR RUN_DIR [...] [--out DIR]
  RUN_DIR    a run folder evaluated by recipes/evaluate.lua (it holds metrics.json)
  --out DIR  where to write (default models/compare-<time>)]]

local function fail(msg) io.stderr:write("compare: " .. msg .. "\n"); os.exit(1) end

local dirs, out = {}, nil
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--help" or a == "-h" then print(usage); os.exit(0)
  elseif a == "--out" then out = arg[i + 1]; i = i + 1
  elseif a:match("^%-%-out=") then out = a:match("^%-%-out=(.*)$")
  elseif a:match("^%-%-") then io.stderr:write(("compare: unknown option '%s'\n%s\n"):format(a, usage)); os.exit(2)
  else dirs[#dirs + 1] = a:gsub("/+$", "") end
  i = i + 1
end
if #dirs < 1 then io.stderr:write("compare: name at least one run folder\n" .. usage .. "\n"); os.exit(2) end
if not out then out = "models/compare-" .. os.date("%Y%m%d-%H%M%S") end

local run = require "aviary.run"
local runs = {}
for _, d in ipairs(dirs) do
  if not run.is_dir(d) then fail(("'%s' is not a folder"):format(d)) end
  local ok, m = pcall(json.read, d .. "/metrics.json")
  if not ok or type(m) ~= "table" then
    fail(("'%s' has no metrics.json: evaluate it first with bin/aviary recipes/evaluate.lua --run %s"):format(d, d))
  end
  local okh, h = pcall(json.read, d .. "/history.json")
  runs[#runs + 1] = {dir = d, name = d:match("([^/]+)$"), m = m, history = okh and type(h) == "table" and h or {}}
end
os.execute("mkdir -p " .. run.sh(out))

local plot = require "aviary.plot"
local cats = {"top-1", "top-5", "macro precision", "macro recall", "macro F1"}
local series = {}
for _, r in ipairs(runs) do
  local m = r.m
  series[#series + 1] = {label = ("%s (%s)"):format(r.name, m.model or "?"),
    values = {m.top1, m.top5, m.macro.precision, m.macro.recall, m.macro.f1}}
end
local fig = plot.grouped_bars{categories = cats, series = series, width = 1100, height = 520, ylim = {0, 1.05},
  title = ("%d runs on the test split"):format(#runs), ylabel = "score", legend = "outside"}
local f1 = fig:save(out .. "/compare_metrics.png")

local fig2 = plot.figure{width = 1100, height = 440, cols = 2, title = "Test accuracy and loss per epoch"}
local a, b = fig2:axes(1), fig2:axes(2)
for k, r in ipairs(runs) do
  local ep, acc, loss = {}, {}, {}
  for j, h in ipairs(r.history) do
    ep[j], acc[j], loss[j] = h.epoch or j, 100 * (h.test_acc or h.val_acc or 0), h.test_loss or h.val_loss or 0
  end
  if #ep > 0 then
    local c = "C" .. ((k - 1) % 10)
    a:line(ep, acc, {label = r.name, color = c})
    b:line(ep, loss, {label = r.name, color = c})
  end
end
a:set{title = "Test accuracy", xlabel = "epoch", ylabel = "top-1 (%)", legend = "lower right"}
b:set{title = "Test loss", xlabel = "epoch", ylabel = "cross-entropy", legend = "upper right"}
local f2 = fig2:save(out .. "/compare_curves.png")

local rows, summary = {}, {}
for _, r in ipairs(runs) do
  local m = r.m
  summary[#summary + 1] = {run = r.dir, model = m.model, top1 = m.top1, top5 = m.top5, macro = m.macro,
                           log_loss = m.log_loss, ece = m.ece, n = m.n}
  rows[#rows + 1] = {{r.name, class = "l"}, {m.model or "?", class = "l"}, {("%.2f%%"):format(100 * m.top1), value = m.top1},
    {("%.2f%%"):format(100 * m.top5), value = m.top5}, {("%.4f"):format(m.macro.f1), value = m.macro.f1},
    {("%.4f"):format(m.log_loss), value = m.log_loss}, {("%.4f"):format(m.ece), value = m.ece}, {tostring(m.n), value = m.n}}
end
json.write(out .. "/compare.json", summary)
local report = require "aviary.report"
local doc = report.Document("Comparison of " .. #runs .. " runs", {subtitle = os.date("%Y-%m-%d %H:%M")})
doc:section("Metrics")
doc:table({"run", "model", "top-1", "top-5", "macro F1", "log loss", "ECE", "images"}, rows, {sortable = true})
doc:image(f1, {caption = "Top-1 and top-5 accuracy and the macro averages of precision, recall and F1, per run."})
doc:section("Curves")
doc:image(f2, {caption = "Test accuracy and loss after every epoch (history.json of each run)."})
local html = doc:save(out .. "/compare.html")
print(("compared %d runs: %s, %s"):format(#runs, f1, f2))
print("report: " .. html)
