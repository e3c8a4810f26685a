--- aviary.evaluation.report: report.html of an evaluated run, built from the files in its folder —
-- metrics.json, plots/index.json and the PNGs (recipes/evaluate.lua), interpret/summary.json and
-- its PNGs (recipes/interpret.lua) — so either recipe can rebuild it after adding its part.
--
--   require("aviary.evaluation.report").build("models/demo-20261129-112706")  -> the report's path
local av = require "aviary"
local json = require "aviary.json"
local report = require "aviary.report"

local M = {}

local function pct(v) return ("%.2f%%"):format(100 * v) end
local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

--- M.build(dir, {cfg=, name=}) -> path of dir/report.html (written atomically)
-- cfg: the run's resolved config (default: dir/config.lua); needs dir/metrics.json
function M.build(dir, opts)
  opts = opts or {}
  local ok, m = pcall(json.read, dir .. "/metrics.json")
  if not ok or type(m) ~= "table" then
    error(("'%s' has no metrics.json: evaluate it first with bin/aviary recipes/evaluate.lua --run %s"):format(dir, dir), 0)
  end
  local cfg = opts.cfg
  if not cfg and exists(dir .. "/config.lua") then cfg = require("aviary.config").resolve(dir .. "/config.lua") end
  local name = opts.name or m.run or dir:match("([^/]+)$")
  local okp, index = pcall(json.read, dir .. "/plots/index.json")
  index = okp and type(index) == "table" and index or {}
  local plots = {}
  for _, p in ipairs(index) do
    if exists(dir .. "/plots/" .. p.file) then plots[p.key] = p end
  end

  local doc = report.Document(("Evaluation: %s"):format(name), {subtitle = ("%s, %d classes, %d test images; "
    .. "checkpoint %s%s; written %s by aviary %s"):format(m.model or "?", m.num_classes, m.n, tostring(m.checkpoint),
    m.epoch and (" (epoch " .. m.epoch .. ")") or "", os.date("%Y-%m-%d %H:%M"), av._VERSION)})
  local function fig(key, extra)
    local p = plots[key]
    if not p then return end
    local o = {caption = p.caption, alt = p.title}
    for k, v in pairs(extra or {}) do o[k] = v end
    doc:image(dir .. "/plots/" .. p.file, o)
  end

  doc:section("Summary")
  doc:cards({{"top-1 accuracy", pct(m.top1)}, {"top-5 accuracy", pct(m.top5)}, {"macro F1", ("%.4f"):format(m.macro.f1)},
    {"macro precision", ("%.4f"):format(m.macro.precision)}, {"macro recall", ("%.4f"):format(m.macro.recall)},
    {"log loss", ("%.4f"):format(m.log_loss)}, {"calibration error", ("%.4f"):format(m.ece)},
    {"mean AP", ("%.4f"):format(m.mean_average_precision or 0)}})
  local secs = m.seconds or 0
  doc:text(("Chance is %.2f%% (%d classes). Metrics follow scikit-learn's definitions (classification_report with "
    .. "every class as a label; zero division counts as 0). Evaluated in %.1f s (%.0f images/s)."):format(100 / m.num_classes,
    m.num_classes, secs, m.n / math.max(secs, 1e-9)), "note")

  doc:section("Training")
  if plots.curves then fig("curves") else doc:text("The run folder has no history.json: no curves.", "note") end
  if cfg then
    doc:heading("Configuration")
    doc:pre(require("aviary.config").serialize(cfg))
  end

  doc:section("Per class")
  fig("per_class_f1")
  fig("worst_classes")
  doc:grid(function() fig("per_class_precision"); fig("per_class_recall") end)
  local rows = {}
  for _, c in ipairs(m.per_class) do
    rows[#rows + 1] = {{c.name, class = "l"}, {("%d"):format(c.index), value = c.index},
      {("%.4f"):format(c.precision), value = c.precision}, {("%.4f"):format(c.recall), value = c.recall},
      {("%.4f"):format(c.f1), value = c.f1, class = c.f1 < m.macro.f1 / 2 and "bad" or nil},
      {c.average_precision and ("%.4f"):format(c.average_precision) or "-", value = c.average_precision or -1},
      {tostring(c.support), value = c.support}}
  end
  doc:heading("Classification report (click a column to sort)")
  doc:table({"class", "#", "precision", "recall", "F1", "average precision", "support"}, rows, {sortable = true, scroll = true})
  if m.report_text then
    doc:html("<details><summary>as scikit-learn prints it</summary>")
    doc:pre(m.report_text)
    doc:html("</details>")
  end

  doc:section("Confusion")
  local names = {}
  for i, c in ipairs(m.per_class) do names[i] = c.name end
  fig("confusion", plots.confusion and plots.confusion.figure_box and
    {matrix = {names = names, counts = m.confusion, box = plots.confusion.figure_box}} or nil)
  doc:heading("The most confused pairs")
  local pairs_rows = {}
  for _, p in ipairs(m.most_confused or {}) do
    pairs_rows[#pairs_rows + 1] = {{p.true_name, class = "l"}, {p.predicted_name, class = "l"}, {tostring(p.count), value = p.count},
      {("%.1f%%"):format(100 * p.rate), value = p.rate}}
  end
  if #pairs_rows > 0 then
    doc:table({"true class", "predicted as", "images", "of the true class"}, pairs_rows, {sortable = true})
  else
    doc:text("No mistakes.", "note")
  end

  doc:section("Errors")
  fig("predictions")
  fig("errors")
  doc:grid(function() fig("scores"); fig("reliability") end)
  fig("pr_curves")

  if plots.pca or plots.tsne then
    doc:section("Feature manifold")
    doc:text(("Features: the %s activations (%d dimensions), saved in %s."):format(tostring(m.layer), m.feature_dim or 0,
      tostring(m.features_file)), "note")
    fig("pca")
    fig("tsne")
    fig("tsne_collage")
  end

  local oki, interp = pcall(json.read, dir .. "/interpret/summary.json")
  if oki and type(interp) == "table" then M.interpretation(doc, dir, interp) end

  doc:section("Files")
  local files = {
    {{"predictions.csv", class = "l"}, {"one row per test image: true and predicted class, top-5 with probabilities", class = "l"}},
    {{"metrics.json", class = "l"}, {"every number on this page, per-class metrics and the confusion matrix", class = "l"}},
    {{"plots/", class = "l"}, {"every figure as a PNG", class = "l"}},
  }
  if m.features_file then
    files[#files + 1] = {{m.features_file, class = "l"}, {"the features, labels and logits (safetensors)", class = "l"}}
  end
  if oki and type(interp) == "table" then
    files[#files + 1] = {{"interpret/", class = "l"}, {"attribution panels, feature maps, feature visualisation, summary.json", class = "l"}}
  end
  doc:table({"file", "what"}, files)
  return doc:save(dir .. "/report.html")
end

--- M.interpretation(doc, dir, summary): the "Interpretation" section from interpret/summary.json
function M.interpretation(doc, dir, s)
  local function img(rel, caption, alt)
    if rel and exists(dir .. "/" .. rel) then doc:image(dir .. "/" .. rel, {caption = caption, alt = alt or caption}) end
  end
  doc:section("Interpretation")
  if s.note then doc:text(s.note, "note") end
  if s.pointing and s.pointing.rows and #s.pointing.rows > 0 then
    doc:heading("Pointing game")
    doc:text(s.pointing.caption or "", "note")
    local rows = {}
    for _, r in ipairs(s.pointing.rows) do
      rows[#rows + 1] = {{r.method, class = "l"}, {("%d / %d"):format(r.hits, r.n), value = r.hits},
        {("%.1f%%"):format(100 * r.score), value = r.score}, {("%.1f%%"):format(100 * r.baseline), value = r.baseline},
        {("%.2f×"):format(r.baseline > 0 and r.score / r.baseline or 0), value = r.baseline > 0 and r.score / r.baseline or 0}}
    end
    doc:table({"method", "maxima in the box", "pointing score", "random point", "ratio"}, rows, {sortable = true})
  end
  for _, p in ipairs(s.panels or {}) do
    doc:heading(p.title or "Attributions")
    img(p.file, p.caption, p.title)
  end
  if s.feature_maps then
    doc:heading("Feature maps")
    img(s.feature_maps.file, s.feature_maps.caption)
  end
  if s.optvis then
    doc:heading("Feature visualisation")
    img(s.optvis.file, s.optvis.caption)
  end
end

return M
