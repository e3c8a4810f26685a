--- aviary.evaluation: a trained model judged on a split, species by species — predictions,
-- metrics (scikit-learn's definitions), the plots people look at, and the feature manifold.
-- recipes/evaluate.lua drives it; notebooks call the same functions.
--
--   local ev = require "aviary.evaluation"
--   local res = ev.predict(net, loader, {classes = ds.classes})   -- one pass: logits, features, paths
--   local m = ev.summarize(res)                                   -- the metrics.json table
--   ev.write_predictions("predictions.csv", res)
--   local plots = ev.plots(res, m, {dir = "plots", history = history})
local av = require "aviary"
local metrics = require "aviary.metrics"
local features = require "aviary.features"
local json = require "aviary.json"

local ev = {}

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- ev.predict(model, loader, {classes=, layer=, pool=, progress=true}) -> result
-- result: {probs = N x C float32 (softmax), logits, labels (1-based int64), preds (Lua list), paths,
--          features = N x D, layer, classes, n, num_classes, seconds}
function ev.predict(model, loader, opts)
  opts = opts or {}
  local f = features.extract(model, loader, {layer = opts.layer, pool = opts.pool, progress = opts.progress,
    label = "evaluating"})
  local C = f.logits:size(2)
  local classes = opts.classes or {}
  if #classes > 0 and #classes ~= C then
    error(("evaluation: the model gives %d class scores but the dataset has %d classes"):format(C, #classes), 0)
  end
  if #classes == 0 then for c = 1, C do classes[c] = tostring(c) end end
  local probs = av.softmax(f.logits:double(), 2):float()
  local _, pred = f.logits:max(2)
  return {probs = probs, logits = f.logits, labels = f.labels, preds = pred:view(-1):tolist(), paths = f.paths,
          features = f.features, layer = f.layer, classes = classes, names = ev.display_names(classes),
          n = f.logits:size(1), num_classes = C, seconds = f.seconds}
end

--- ev.summarize(res, {ece_bins = 15, confused = 20}) -> the metrics table metrics.json holds:
-- n, top1, top5, log_loss, ece, macro/weighted {precision, recall, f1}, per_class list, classification_report
-- (sklearn's output_dict) and its text, most_confused pairs, reliability bins, confusion (C x C lists),
-- average_precision per class and its mean
function ev.summarize(res, opts)
  opts = opts or {}
  local C = res.num_classes
  local m = metrics.Classification(C, {topk = {5}, ece_bins = opts.ece_bins or 15})
  m:update(res.logits, res.labels)
  local r = m:compute()
  local dict, text = metrics.classification_report(r, res.classes)
  local out = {
    n = r.n, num_classes = C, top1 = r.accuracy, top5 = r.top5, log_loss = r.log_loss, ece = r.ece,
    macro = r.macro, weighted = r.weighted, classification_report = dict, report_text = text,
    most_confused = metrics.most_confused(r.confusion, opts.confused or 20, res.classes),
    reliability = m:reliability(), confusion = r.confusion:tolist(), per_class = {},
  }
  -- one-vs-rest average precision per class (sklearn.metrics.average_precision_score)
  local P = res.probs:t():contiguous():tolist()
  local labels = res.labels:tolist()
  local ap_sum, ap_n = 0.0, 0
  for c = 1, C do
    local truth = {}
    local any = false
    for i = 1, #labels do truth[i] = labels[i] == c; any = any or truth[i] end
    local ap = any and metrics.average_precision(truth, P[c]) or nil
    if ap then ap_sum, ap_n = ap_sum + ap, ap_n + 1 end
    out.per_class[c] = {index = c, name = res.classes[c], precision = r.per_class.precision[c],
                        recall = r.per_class.recall[c], f1 = r.per_class.f1[c], support = r.per_class.support[c],
                        average_precision = ap}
  end
  out.mean_average_precision = ap_n > 0 and ap_sum / ap_n or 0.0
  return out
end

local function csv_field(s)
  s = tostring(s)
  if s:find('[,"\n\r]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

--- ev.write_csv(path, header, rows) -- a CSV file (cells quoted where they need it), written atomically
function ev.write_csv(path, header, rows)
  local lines = {}
  for r, row in ipairs({header, table.unpack(rows)}) do
    local cells = {}
    for i, c in ipairs(row) do cells[i] = csv_field(c) end
    lines[r] = table.concat(cells, ",")
  end
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then error(("cannot write '%s': %s"):format(path, tostring(err)), 2) end
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then os.remove(tmp); error(("cannot write '%s': %s"):format(path, tostring(rerr)), 2) end
  return path
end

--- ev.write_predictions(path, res [, k=5]) -- one CSV row per image: path, true and predicted class
-- (1-based index and name), correct, the true class's probability, and the top-k classes with probabilities
function ev.write_predictions(path, res, k)
  k = math.min(k or 5, res.num_classes)
  local vals, idx = res.probs:topk(k, 2)
  vals, idx = vals:tolist(), idx:tolist()
  local labels = res.labels:tolist()
  local ptrue = res.probs:gather(2, res.labels:view(-1, 1)):view(-1):tolist()
  local head = {"path", "true", "true_name", "pred", "pred_name", "correct", "p_true"}
  for j = 1, k do head[#head + 1] = "top" .. j; head[#head + 1] = "top" .. j .. "_name"; head[#head + 1] = "top" .. j .. "_p" end
  local rows = {}
  for i = 1, res.n do
    local t, p = labels[i], res.preds[i]
    local row = {res.paths[i] or "", t, res.classes[t], p, res.classes[p], t == p and 1 or 0, ("%.6f"):format(ptrue[i])}
    for j = 1, k do
      row[#row + 1] = idx[i][j]
      row[#row + 1] = res.classes[idx[i][j]]
      row[#row + 1] = ("%.6f"):format(vals[i][j])
    end
    rows[i] = row
  end
  return ev.write_csv(path, head, rows)
end

--- ev.write_metrics(path, m, extra) -- metrics.json (the summarize() table plus `extra` fields), atomically
function ev.write_metrics(path, m, extra)
  local out = {}
  for k, v in pairs(m) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v end
  json.write(path, out)
  return path
end

-- ---- pictures ------------------------------------------------------------------------------

local function thumb(path, size)
  local image = require "aviary.image"
  local ok, img = pcall(image.load, path, {min_size = {size, size}})
  if not ok then return nil end
  img = image.resize(img, size)
  return image.center_crop(img, size)
end

local function short(name, n)
  name = tostring(name)
  if #name > n then name = name:sub(1, n - 1) .. "…" end
  return name
end

--- ev.display_names(classes) -> names for plots: CUB's "017.Cardinal" numbering and underscores
-- dropped ("Cardinal"), and a first word every class shares ("Synthetic ...") left out
function ev.display_names(classes)
  local out, first = {}, nil
  for i, c in ipairs(classes) do
    out[i] = tostring(c):gsub("^%d+%.", ""):gsub("_", " ")
    local w = out[i]:match("^(%S+) %S")
    if i == 1 then first = w elseif first ~= w then first = nil end
  end
  if first and #out > 1 then
    for i, c in ipairs(out) do out[i] = c:sub(#first + 2) end
  end
  return out
end
ev.short_name = short

-- a deterministic shuffle (Lua's math.random would disturb the caller's stream)
local function sample(list, k, seed)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  local s = seed or 1
  for i = #out, 2, -1 do
    s = (s * 1103515245 + 12345) % 2147483648
    local j = s % i + 1
    out[i], out[j] = out[j], out[i]
  end
  local r = {}
  for i = 1, math.min(k, #out) do r[i] = out[i] end
  return r
end

--- ev.plot_curves(history, path) -- loss and accuracy per epoch, train vs test, from history.json records
function ev.plot_curves(history, path, opts)
  local plot = require "aviary.plot"
  opts = opts or {}
  local ep, trl, tel, tra, tea = {}, {}, {}, {}, {}
  local best, best_ep = -1, nil
  for i, h in ipairs(history) do
    ep[i] = h.epoch or i
    trl[i], tel[i] = h.train_loss, h.test_loss or h.val_loss
    tra[i], tea[i] = h.train_acc and 100 * h.train_acc, (h.test_acc or h.val_acc) and 100 * (h.test_acc or h.val_acc)
    if tea[i] and tea[i] > best then best, best_ep = tea[i], ep[i] end
  end
  local fig = plot.figure{width = 1100, height = 430, cols = 2, title = opts.title or "Training curves"}
  local a = fig:axes(1)
  a:line(ep, trl, {label = "train", color = "C0"})
  if #tel > 0 then a:line(ep, tel, {label = "test", color = "C1"}) end
  a:set{title = "Loss", xlabel = "epoch", ylabel = "cross-entropy", legend = "upper right"}
  local b = fig:axes(2)
  b:line(ep, tra, {label = "train", color = "C0"})
  if #tea > 0 then b:line(ep, tea, {label = "test", color = "C1"}) end
  if best_ep then b:vline(best_ep, {label = ("best %.1f%% (epoch %d)"):format(best, best_ep), color = "gray", dash = true}) end
  b:set{title = "Accuracy", xlabel = "epoch", ylabel = "top-1 accuracy (%)", legend = "lower right"}
  return fig:save(path)
end

--- ev.plots(res, m, {dir=, history=, pr_classes=, grid=24, seed=1, tsne=, pca=, collage=}) -> list of
-- {key, file, title, caption} for every plot written under dir
function ev.plots(res, m, opts)
  local plot = require "aviary.plot"
  local dir = opts.dir
  os.execute("mkdir -p " .. sh(dir))
  local out = {}
  local function add(key, file, title, caption) out[#out + 1] = {key = key, file = file, title = title, caption = caption} end
  local C, names = res.num_classes, res.names or ev.display_names(res.classes)
  local many = C > 40

  if opts.history and #opts.history > 0 then
    add("curves", ev.plot_curves(opts.history, dir .. "/curves.png"), "Training curves",
      "Loss and top-1 accuracy per epoch on the training and test splits (history.json).")
  end

  -- per-class precision, recall, F1: all classes sorted, the macro average dashed
  for _, k in ipairs({"f1", "precision", "recall"}) do
    local labels, values = {}, {}
    for c = 1, C do labels[c], values[c] = short(names[c], 22), m.per_class[c][k] end
    local title = ({f1 = "F1", precision = "Precision", recall = "Recall"})[k]
    local fig = plot.bars{labels = labels, values = values, sort = "desc", width = 1200, height = 460,
      ref = {value = m.macro[k], label = ("macro average %.3f"):format(m.macro[k])},
      title = ("%s per class, sorted (%d classes)"):format(title, C), ylabel = title, ylim = {0, 1.02},
      xlabel = many and "classes, best to worst" or nil, color = "C0"}
    add("per_class_" .. k, fig:save(dir .. "/per_class_" .. k .. ".png"), title .. " per class",
      ("Every class's %s on the test split, best first; the dashed line is the macro average."):format(
        k == "f1" and "F1" or k))
  end

  -- the worst 25 classes by F1, with precision and recall beside
  do
    local order = {}
    for c = 1, C do order[c] = c end
    table.sort(order, function(a, b)
      local fa, fb = m.per_class[a].f1, m.per_class[b].f1
      if fa ~= fb then return fa < fb end
      return a < b
    end)
    local n = math.min(25, C)
    local cats, p, r, f = {}, {}, {}, {}
    for i = 1, n do
      local c = order[i]
      cats[i] = short(names[c], 28)
      p[i], r[i], f[i] = m.per_class[c].precision, m.per_class[c].recall, m.per_class[c].f1
    end
    local fig = plot.grouped_bars{categories = cats, series = {{label = "precision", values = p},
      {label = "recall", values = r}, {label = "F1", values = f}}, horizontal = true, width = 1000,
      height = math.max(420, 60 + n * 30), title = ("The %d worst classes by F1"):format(n), xlabel = "score",
      xlim = {0, 1}, legend = "lower right"}
    add("worst_classes", fig:save(dir .. "/worst_classes.png"), ("The %d worst classes"):format(n),
      "The classes with the lowest F1, worst at the top, with their precision and recall.")
  end

  -- the confusion matrix (rows: true class, normalised by the class's support)
  do
    local cm = av.tensor(m.confusion, {dtype = "float64"})
    local rows = cm:sum(2):clamp(1, math.huge)
    local rate = (cm / rows):float()
    local fig = plot.heatmap{data = rate, cmap = "viridis", vmin = 0, vmax = 1, colorbar = true,
      colorbar_label = "fraction of the true class", width = many and 1000 or 900, height = many and 920 or 820,
      xlabels = not many and (function() local t = {} for c = 1, C do t[c] = short(names[c], 26) end return t end)() or nil,
      ylabels = not many and (function() local t = {} for c = 1, C do t[c] = short(names[c], 26) end return t end)() or nil,
      annotate = C <= 12, fmt = "%.2f", title = ("Confusion matrix (%d classes)"):format(C),
      xlabel = "predicted class", ylabel = "true class"}
    local file = fig:save(dir .. "/confusion.png")
    add("confusion", file, "Confusion matrix", "Rows are the true classes, columns the predicted ones; each row is "
      .. "divided by the class's number of test images, so the diagonal is the per-class recall.")
    out[#out].figure_box = fig.axes_box and fig:axes_box(1) or nil
  end

  -- test images titled actual / predicted, and the most confident mistakes
  local labels = res.labels:tolist()
  local conf = res.probs:max(2)
  conf = conf:view(-1):tolist()
  local cell = opts.cell or 150
  local function grid(list, key, title, caption, fmt)
    local imgs, caps, cols = {}, {}, {}
    for _, i in ipairs(list) do
      local t = thumb(res.paths[i], cell)
      if t then
        imgs[#imgs + 1] = t
        caps[#caps + 1] = fmt(i)
        cols[#cols + 1] = labels[i] == res.preds[i] and "green" or "red"
      end
    end
    if #imgs == 0 then return end
    local fig = plot.image_grid{images = imgs, captions = caps, caption_colors = cols, cell = cell, title = title,
      cols = math.min(8, #imgs)}
    add(key, fig:save(dir .. "/" .. key .. ".png"), title, caption)
  end
  local all = {}
  for i = 1, res.n do all[i] = i end
  grid(sample(all, opts.grid or 24, opts.seed or 1), "predictions", "Test images: actual / predicted",
    "A random sample of test images; the caption is the true class over the predicted one, green when right, red when wrong.",
    function(i) return short(names[labels[i]], 20) .. "\n" .. short(names[res.preds[i]], 20) end)
  local wrong = {}
  for i = 1, res.n do if labels[i] ~= res.preds[i] then wrong[#wrong + 1] = i end end
  table.sort(wrong, function(a, b) if conf[a] ~= conf[b] then return conf[a] > conf[b] end return a < b end)
  local top_wrong = {}
  for i = 1, math.min(opts.grid or 24, #wrong) do top_wrong[i] = wrong[i] end
  grid(top_wrong, "errors", "The most confident mistakes",
    "The wrong predictions the model was surest of: the true class, then the predicted one with its probability.",
    function(i) return short(names[labels[i]], 20) .. "\n" .. ("%.2f → "):format(conf[i]) .. short(names[res.preds[i]], 14) end)

  -- score distributions of right and wrong predictions
  do
    local right, bad = {}, {}
    for i = 1, res.n do
      if labels[i] == res.preds[i] then right[#right + 1] = conf[i] else bad[#bad + 1] = conf[i] end
    end
    local series = {}
    if #right > 0 then series[#series + 1] = {values = right, label = ("correct (%d)"):format(#right), color = "green"} end
    if #bad > 0 then series[#series + 1] = {values = bad, label = ("wrong (%d)"):format(#bad), color = "red"} end
    local fig = plot.hist{series = series, bins = 20, range = {0, 1}, width = 900, height = 460,
      title = "Confidence of correct and wrong predictions", xlabel = "top-1 softmax probability", ylabel = "images"}
    add("scores", fig:save(dir .. "/scores.png"), "Score distributions",
      "The predicted class's probability for the predictions that were right and those that were wrong.")
  end

  -- reliability diagram (calibration)
  do
    local xs, acc = {}, {}
    for _, b in ipairs(m.reliability) do
      if b.count > 0 then
        xs[#xs + 1] = b.confidence
        acc[#acc + 1] = b.accuracy
      end
    end
    local fig = plot.figure{width = 620, height = 560, title = ("Reliability (ECE %.3f)"):format(m.ece)}
    local a = fig:axes(1)
    a:line({0, 1}, {0, 1}, {label = "perfect calibration", color = "gray", dash = true})
    a:line(xs, acc, {label = "model", color = "C0", marker = "o"})
    a:set{xlabel = "mean confidence in bin", ylabel = "accuracy in bin", xlim = {0, 1}, ylim = {0, 1}, legend = "upper left"}
    add("reliability", fig:save(dir .. "/reliability.png"), "Calibration",
      ("Accuracy against confidence in %d equal-width bins; the expected calibration error is the "
       .. "count-weighted mean gap."):format(#m.reliability))
  end

  -- precision-recall curves for chosen classes (default: the 3 best and 3 worst by average precision)
  do
    local chosen = opts.pr_classes
    if not chosen then
      local order = {}
      for c = 1, C do if m.per_class[c].average_precision then order[#order + 1] = c end end
      table.sort(order, function(a, b)
        local x, y = m.per_class[a].average_precision, m.per_class[b].average_precision
        if x ~= y then return x > y end
        return a < b
      end)
      chosen = {}
      for i = 1, math.min(3, #order) do chosen[#chosen + 1] = order[i] end
      for i = math.max(#order - 2, 4), #order do chosen[#chosen + 1] = order[i] end
    end
    local P = res.probs:t():contiguous()
    local fig = plot.figure{width = 900, height = 600, title = "Precision-recall curves"}
    local a = fig:axes(1)
    for k, c in ipairs(chosen) do
      local truth = {}
      for i = 1, res.n do truth[i] = labels[i] == c end
      local pr, rc = metrics.precision_recall_curve(truth, P[c]:tolist())
      local sx, sy = {}, {}     -- drawn as steps (sklearn's PrecisionRecallDisplay: drawstyle steps-post)
      for j = 1, #rc do
        sx[#sx + 1], sy[#sy + 1] = rc[j], pr[j]
        if j < #rc then sx[#sx + 1], sy[#sy + 1] = rc[j + 1], pr[j] end
      end
      a:line(sx, sy, {label = ("AP %.2f  %s"):format(metrics.average_precision(truth, P[c]:tolist()), short(names[c], 26)),
        color = "C" .. ((k - 1) % 10)})
    end
    a:set{xlabel = "recall", ylabel = "precision", xlim = {0, 1}, ylim = {0, 1.02}, legend = "lower left"}
    add("pr_curves", fig:save(dir .. "/pr_curves.png"), "Precision-recall curves",
      "One-vs-rest precision against recall as the threshold on the class's probability falls, for "
      .. (opts.pr_classes and "the chosen classes." or "the three best and three worst classes by average precision."))
  end
  return out
end

--- ev.manifold(res, {dir=, tsne={perplexity=50, learning_rate=150, ...}, collage=800, seed=1}) -> plots list
-- PCA (explained variance) and t-SNE of the features, scatter plots coloured by class, a thumbnail collage
function ev.manifold(res, opts)
  local plot = require "aviary.plot"
  local dir = opts.dir
  local out = {}
  local function add(key, file, title, caption) out[#out + 1] = {key = key, file = file, title = title, caption = caption} end
  local X = res.features
  local N, D = X:size(1), X:size(2)
  local groups = res.labels:tolist()
  local gnames = {}
  local names = res.names or ev.display_names(res.classes)
  for c = 1, res.num_classes do gnames[c] = short(names[c], 26) end
  local legend = res.num_classes <= 20
  local info = {}
  if N >= 3 then
    local p = features.pca(X, {n_components = 2})
    local E = p.embedding
    local evr = p.explained_variance_ratio
    local fig = plot.scatter{x = E:select(2, 1), y = E:select(2, 2), groups = groups, group_names = gnames,
      legend = legend and "outside" or false, width = legend and 1100 or 900, height = 760, size = 3,
      title = ("PCA of the %s features (%d images, %d dimensions)"):format(res.layer, N, D),
      xlabel = ("PC1 (%.1f%% of the variance)"):format(100 * evr[1]),
      ylabel = ("PC2 (%.1f%% of the variance)"):format(100 * evr[2])}
    add("pca", fig:save(dir .. "/pca.png"), "PCA", "The features projected on their two principal axes, coloured by class.")
    info.pca_explained_variance_ratio = evr
  end
  if opts.tsne ~= false and N >= 10 then
    local t = opts.tsne or {}
    local perplexity = math.min(t.perplexity or 50, math.max(2, (N - 1) / 3))
    local topts = {perplexity = perplexity, learning_rate = t.learning_rate or 150, n_iter = t.n_iter or 1000,
                   seed = opts.seed or 1, init = "pca"}
    local t0 = av.clock()
    io.stderr:write(("t-SNE of %d x %d features (perplexity %g, learning rate %g)...\n"):format(N, D, perplexity,
      topts.learning_rate))
    local Y, tinfo = features.tsne(X, topts)
    info.tsne = {perplexity = perplexity, learning_rate = topts.learning_rate, n_iter = topts.n_iter,
                 kl_divergence = tinfo and tinfo.kl_divergence, seconds = av.clock() - t0}
    local ys = {Y:select(2, 1):tolist(), Y:select(2, 2):tolist()}
    local fig = plot.scatter{x = ys[1], y = ys[2], groups = groups, group_names = gnames,
      legend = legend and "outside" or false, width = legend and 1100 or 900, height = 760, size = 3,
      title = ("t-SNE of the %s features (perplexity %g)"):format(res.layer, perplexity)}
    add("tsne", fig:save(dir .. "/tsne.png"), "t-SNE", "The features embedded in two dimensions by t-SNE, coloured by "
      .. "class: classes the network tells apart form their own clusters.")
    local k = math.min(opts.collage or 800, N)
    local all = {}
    for i = 1, N do all[i] = i end
    local pick = sample(all, k, opts.seed or 1)
    local imgs, xs, yy, borders = {}, {}, {}, {}
    for _, i in ipairs(pick) do
      local th = thumb(res.paths[i], 48)
      if th then
        imgs[#imgs + 1], xs[#xs + 1], yy[#yy + 1] = th, ys[1][i], ys[2][i]
        borders[#borders + 1] = groups[i] == res.preds[i] and "green" or "red"
      end
    end
    if #imgs > 0 then
      local fig2 = plot.collage{images = imgs, x = xs, y = yy, thumb = 40, width = 1200, height = 1200,
        title = ("t-SNE collage: %d test images at their embedded positions"):format(#imgs), border_colors = borders}
      add("tsne_collage", fig2:save(dir .. "/tsne_collage.png"), "t-SNE collage",
        "Thumbnails of test images placed where t-SNE put their features (green border: predicted right, red: wrong).")
    end
  end
  return out, info
end

return ev
