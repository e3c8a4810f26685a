--- aviary.metrics: streaming classification metrics from logits and 1-based targets.
--
--   local metrics = require "aviary.metrics"
--   local m = metrics.Classification(200)            -- {topk = {5}, ece_bins = 15}
--   for batch in loader:iter() do m:update(net(batch.input), batch.target) end
--   local r = m:compute()   -- r.accuracy, r.top5, r.macro_f1, r.confusion, r.per_class.recall[c], ...
--   m:reset()
--
-- Conventions are scikit-learn's with zero_division=0 and labels = every class
-- 1..C (so macro averages count classes that never occur as 0, exactly like
-- sklearn.metrics.precision_recall_fscore_support(y, p, labels=range(C),
-- zero_division=0)). The confusion matrix has true classes as rows and
-- predicted classes as columns (sklearn.metrics.confusion_matrix). The
-- prediction is the arg-max logit (the first on ties); log loss is sklearn's
-- log_loss of softmax(logits) in float64 (probabilities clipped to [eps, 1 - eps],
-- eps = 2.2e-16, then renormalised: a sure mistake costs 36, not infinity); the expected calibration
-- error uses `ece_bins` equal-width confidence bins (lo, hi] over the max
-- softmax probability: sum over bins of |accuracy - mean confidence| * n_bin / N.
local av = require "aviary"

local metrics = {}
local DBL_EPS = 2.220446049250313e-16

local Classification = {}
Classification.__index = Classification
Classification.__name = "aviary.metrics.Classification"

local function check_k(who, list)
  for _, k in ipairs(list) do
    if math.type(k) ~= "integer" or k < 1 then error(who .. ": topk entries must be positive integers", 3) end
  end
end

--- metrics.Classification(num_classes, {topk = {5}, ece_bins = 15}) -> a streaming accumulator
function metrics.Classification(num_classes, opts)
  local who = "metrics.Classification"
  if math.type(num_classes) ~= "integer" or num_classes < 1 then
    error(who .. ": num_classes must be a positive integer, got " .. tostring(num_classes), 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "topk" and k ~= "ece_bins" then
      error(("%s: unknown option '%s' (valid: topk, ece_bins)"):format(who, tostring(k)), 2)
    end
  end
  local topk = opts.topk or {5}
  if type(topk) == "number" then topk = {topk} end
  check_k(who, topk)
  local bins = opts.ece_bins or 15
  if math.type(bins) ~= "integer" or bins < 1 then error(who .. ": ece_bins must be a positive integer", 2) end
  local self = setmetatable({num_classes = num_classes, topk = topk, ece_bins = bins}, Classification)
  self:reset()
  return self
end

--- m:reset(): forgets everything seen
function Classification:reset()
  local C = self.num_classes
  self.n = 0
  self.cm = {}                        -- flat C*C counts, row = true class, column = predicted
  for i = 1, C * C do self.cm[i] = 0 end
  self.topk_correct = {}
  for i = 1, #self.topk do self.topk_correct[i] = 0 end
  self.nll_sum = 0.0
  self.bin_count, self.bin_conf, self.bin_correct = {}, {}, {}
  for b = 1, self.ece_bins do self.bin_count[b], self.bin_conf[b], self.bin_correct[b] = 0, 0.0, 0 end
  return self
end

--- m:update(logits, target): logits N x C (any float dtype), target N 1-based class numbers
function Classification:update(logits, target)
  local who = "metrics.Classification:update"
  if not av.is_tensor(logits) or logits:dim() ~= 2 then
    error(who .. ": logits must be an N x C tensor", 2)
  end
  local N, C = logits:size(1), logits:size(2)
  if C ~= self.num_classes then
    error(("%s: logits have %d classes, the metric was made for %d"):format(who, C, self.num_classes), 2)
  end
  if type(target) == "table" then target = av.tensor(target) end
  if not av.is_tensor(target) or target:dim() ~= 1 or target:size(1) ~= N then
    error(("%s: target must be a 1-d tensor of %d class numbers"):format(who, N), 2)
  end
  if N == 0 then return self end
  local _ <close> = av.no_grad()
  local x = logits:detach():double()
  local t = target:long()
  local tl = t:tolist()
  for i = 1, N do
    local c = tl[i]
    if math.type(c) ~= "integer" or c < 1 or c > C then
      error(("%s: target %d is %s, outside 1..%d"):format(who, i, tostring(c), C), 2)
    end
  end
  local logp = av.log_softmax(x, 2)
  local conf, pred = logp:max(2)
  local pl, confl = pred:tolist(), conf:exp():tolist()
  -- sklearn.metrics.log_loss: probabilities clipped to [eps, 1 - eps] (float64 eps) and renormalised
  local p = logp:exp():clamp(DBL_EPS, 1 - DBL_EPS)
  self.nll_sum = self.nll_sum - (p:gather(2, t:view(N, 1)):view(N) / p:sum(2):view(N)):log():sum():item()
  for i = 1, N do
    local k = (tl[i] - 1) * C + pl[i]
    self.cm[k] = self.cm[k] + 1
    local correct = pl[i] == tl[i] and 1 or 0
    local b = confl[i] == confl[i] and math.max(1, math.min(self.ece_bins, math.ceil(confl[i] * self.ece_bins))) or 1
    self.bin_count[b] = self.bin_count[b] + 1
    self.bin_conf[b] = self.bin_conf[b] + confl[i]
    self.bin_correct[b] = self.bin_correct[b] + correct
  end
  for j, k in ipairs(self.topk) do
    local kk = math.min(k, C)
    local _, idx = x:topk(kk, 2)
    local hit = idx:eq(t:view(N, 1)):sum():item()
    self.topk_correct[j] = self.topk_correct[j] + hit
  end
  self.n = self.n + N
  return self
end

local function safe_div(a, b) if b == 0 then return 0.0 end return a / b end

--- m:compute() -> {n, accuracy, top<k>, log_loss, ece, confusion (C x C int64),
--  per_class = {precision, recall, f1, support} (lists), macro = {precision, recall, f1},
--  weighted = {...}, and the flat names macro_precision ... weighted_f1}
function Classification:compute()
  local C, n = self.num_classes, self.n
  local r = {n = n, num_classes = C}
  local cm = self.cm
  local trace = 0
  local prec, rec, f1, support = {}, {}, {}, {}
  local col = {}
  for j = 1, C do col[j] = 0 end
  for i = 1, C do
    local row = 0
    for j = 1, C do
      local v = cm[(i - 1) * C + j]
      row = row + v
      col[j] = col[j] + v
    end
    support[i] = row
    trace = trace + cm[(i - 1) * C + i]
  end
  for c = 1, C do
    local tp = cm[(c - 1) * C + c]
    prec[c] = safe_div(tp, col[c])
    rec[c] = safe_div(tp, support[c])
    f1[c] = (prec[c] + rec[c]) > 0 and 2 * prec[c] * rec[c] / (prec[c] + rec[c]) or 0.0
  end
  local function avg(list, weights)
    local s, w = 0.0, 0
    for c = 1, C do
      local wc = weights and weights[c] or 1
      s, w = s + list[c] * wc, w + wc
    end
    return safe_div(s, w)
  end
  r.accuracy = safe_div(trace, n)
  for j, k in ipairs(self.topk) do r["top" .. k] = safe_div(self.topk_correct[j], n) end
  r.log_loss = n > 0 and self.nll_sum / n or 0.0
  local ece = 0.0
  for b = 1, self.ece_bins do
    local cnt = self.bin_count[b]
    if cnt > 0 then ece = ece + math.abs(self.bin_correct[b] / cnt - self.bin_conf[b] / cnt) * cnt / n end
  end
  r.ece = ece
  r.per_class = {precision = prec, recall = rec, f1 = f1, support = support}
  r.macro = {precision = avg(prec), recall = avg(rec), f1 = avg(f1)}
  r.weighted = {precision = avg(prec, support), recall = avg(rec, support), f1 = avg(f1, support)}
  for _, kind in ipairs({"macro", "weighted"}) do
    for _, m in ipairs({"precision", "recall", "f1"}) do r[kind .. "_" .. m] = r[kind][m] end
  end
  r.confusion = self:confusion()
  return r
end

--- m:confusion() -> C x C int64 tensor (rows: true class, columns: predicted)
function Classification:confusion()
  local C = self.num_classes
  return av.tensor(self.cm, {dtype = "int64"}):view(C, C)
end

--- m:state_dict() -> plain table (JSON-able), for resuming a partial epoch
function Classification:state_dict()
  return {num_classes = self.num_classes, n = self.n, cm = self.cm, topk = self.topk,
          topk_correct = self.topk_correct, nll_sum = self.nll_sum, ece_bins = self.ece_bins,
          bin_count = self.bin_count, bin_conf = self.bin_conf, bin_correct = self.bin_correct}
end

function Classification:load_state_dict(sd)
  if sd.num_classes ~= self.num_classes or sd.ece_bins ~= self.ece_bins or #sd.topk ~= #self.topk then
    error("metrics.Classification:load_state_dict: state of a differently configured metric", 2)
  end
  for _, k in ipairs({"n", "nll_sum"}) do self[k] = sd[k] end
  for _, k in ipairs({"cm", "topk_correct", "bin_count", "bin_conf", "bin_correct"}) do
    local copy = {}
    for i, v in ipairs(sd[k]) do copy[i] = v end
    self[k] = copy
  end
  return self
end

--- metrics.classification(logits, target [, num_classes, opts]) -> compute() of one batch
function metrics.classification(logits, target, num_classes, opts)
  local m = metrics.Classification(num_classes or logits:size(2), opts)
  m:update(logits, target)
  return m:compute()
end

--- metrics.accuracy(logits, target [, k=1]) -> fraction whose target is among the top k logits
function metrics.accuracy(logits, target, k)
  k = k or 1
  local N = logits:size(1)
  if N == 0 then return 0.0 end
  local _ <close> = av.no_grad()
  local _, idx = logits:detach():topk(math.min(k, logits:size(2)), 2)
  return idx:eq(target:long():view(N, 1)):sum():item() / N
end

-- ---- reports over finished predictions -----------------------------------------------

local function as_list(who, v, name)
  if av.is_tensor(v) then return v:tolist() end
  if type(v) ~= "table" then error(("%s: %s must be a list or a 1-d tensor"):format(who, name), 3) end
  return v
end

--- metrics.classification_report(r, names) -> table, text: scikit-learn's classification_report of a
-- compute() result `r`, both as its output_dict (keys: each class name, 'accuracy' or 'micro avg',
-- 'macro avg', 'weighted avg'; fields precision, recall, f1-score, support) and as its text (digits 4).
-- names: the class names (default "1".."C"). Like sklearn called with labels = every class: when
-- some class neither occurs nor is predicted, the accuracy row becomes a 'micro avg' row.
function metrics.classification_report(r, names, opts)
  local who = "metrics.classification_report"
  if type(r) ~= "table" or not r.per_class then error(who .. ": expected the result of Classification:compute()", 2) end
  opts = opts or {}
  local digits = opts.digits or 4
  local C = r.num_classes
  names = names or {}
  local pc = r.per_class
  local dict, rows = {}, {}
  local cm = r.confusion
  local col = cm:sum(1):tolist()
  local all_seen = true
  for c = 1, C do
    local name = names[c] or tostring(c)
    if dict[name] then error(("%s: class name '%s' appears twice"):format(who, name), 2) end
    dict[name] = {precision = pc.precision[c], recall = pc.recall[c], ["f1-score"] = pc.f1[c], support = pc.support[c]}
    rows[#rows + 1] = {name, pc.precision[c], pc.recall[c], pc.f1[c], pc.support[c]}
    if pc.support[c] == 0 and col[c] == 0 then all_seen = false end
  end
  local n = r.n
  dict["macro avg"] = {precision = r.macro.precision, recall = r.macro.recall, ["f1-score"] = r.macro.f1, support = n}
  dict["weighted avg"] = {precision = r.weighted.precision, recall = r.weighted.recall, ["f1-score"] = r.weighted.f1,
                          support = n}
  if all_seen then
    dict.accuracy = r.accuracy
  else
    dict["micro avg"] = {precision = r.accuracy, recall = r.accuracy, ["f1-score"] = r.accuracy, support = n}
  end
  local width = #"weighted avg"
  for _, row in ipairs(rows) do width = math.max(width, utf8.len(row[1]) or #row[1]) end
  width = math.max(width, digits)
  local function pad(s, w) return (" "):rep(math.max(0, w - (utf8.len(s) or #s))) .. s end
  local function num(v) return pad(("%." .. digits .. "f"):format(v), 9) end
  local out = {pad("", width) .. " " .. " " .. pad("precision", 9) .. " " .. pad("recall", 9) .. " " .. pad("f1-score", 9)
    .. " " .. pad("support", 9), ""}
  for _, row in ipairs(rows) do
    out[#out + 1] = pad(row[1], width) .. "  " .. num(row[2]) .. " " .. num(row[3]) .. " " .. num(row[4]) .. " "
      .. pad(tostring(row[5]), 9)
  end
  out[#out + 1] = ""
  if all_seen then
    out[#out + 1] = pad("accuracy", width) .. "  " .. pad("", 9) .. " " .. pad("", 9) .. " " .. num(r.accuracy) .. " "
      .. pad(tostring(n), 9)
  else
    out[#out + 1] = pad("micro avg", width) .. "  " .. num(r.accuracy) .. " " .. num(r.accuracy) .. " " .. num(r.accuracy)
      .. " " .. pad(tostring(n), 9)
  end
  for _, k in ipairs({"macro", "weighted"}) do
    out[#out + 1] = pad(k .. " avg", width) .. "  " .. num(r[k].precision) .. " " .. num(r[k].recall) .. " "
      .. num(r[k].f1) .. " " .. pad(tostring(n), 9)
  end
  return dict, table.concat(out, "\n") .. "\n"
end

--- metrics.most_confused(confusion, k [, names]) -> up to k {true=, predicted=, count=, rate=, true_name=,
-- predicted_name=} for the largest off-diagonal cells (rate = count / the true class's support), largest first
function metrics.most_confused(cm, k, names)
  if not av.is_tensor(cm) or cm:dim() ~= 2 or cm:size(1) ~= cm:size(2) then
    error("metrics.most_confused: expected a C x C confusion matrix", 2)
  end
  k = k or 10
  names = names or {}
  local C = cm:size(1)
  local m = cm:tolist()
  local cells = {}
  for i = 1, C do
    local row = 0
    for j = 1, C do row = row + m[i][j] end
    for j = 1, C do
      if i ~= j and m[i][j] > 0 then
        cells[#cells + 1] = {["true"] = i, predicted = j, count = m[i][j], rate = m[i][j] / row,
                             true_name = names[i] or tostring(i), predicted_name = names[j] or tostring(j)}
      end
    end
  end
  table.sort(cells, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    if a.rate ~= b.rate then return a.rate > b.rate end
    if a["true"] ~= b["true"] then return a["true"] < b["true"] end
    return a.predicted < b.predicted
  end)
  local out = {}
  for i = 1, math.min(k, #cells) do out[i] = cells[i] end
  return out
end

--- metrics.precision_recall_curve(is_positive, scores) -> precision, recall, thresholds (Lua lists), as
-- sklearn.metrics.precision_recall_curve: one point per distinct score, recall decreasing, a final (1, 0)
function metrics.precision_recall_curve(truth, scores)
  local who = "metrics.precision_recall_curve"
  truth, scores = as_list(who, truth, "is_positive"), as_list(who, scores, "scores")
  local n = #scores
  if #truth ~= n then error(("%s: %d truths for %d scores"):format(who, #truth, n), 2) end
  if n == 0 then error(who .. ": no scores", 2) end
  local idx = {}
  for i = 1, n do idx[i] = i end
  table.sort(idx, function(a, b)
    if scores[a] ~= scores[b] then return scores[a] > scores[b] end
    return a > b
  end)
  local tps, fps, thr = {}, {}, {}
  local tp, fp = 0, 0
  for r = 1, n do
    local i = idx[r]
    local t = truth[i]
    if t == true or (type(t) == "number" and t ~= 0) then tp = tp + 1 else fp = fp + 1 end
    if r == n or scores[idx[r + 1]] ~= scores[i] then
      tps[#tps + 1], fps[#fps + 1], thr[#thr + 1] = tp, fp, scores[i]
    end
  end
  local m = #tps
  local P, R, T = {}, {}, {}
  for j = m, 1, -1 do
    local ps = tps[j] + fps[j]
    P[#P + 1] = ps > 0 and tps[j] / ps or 0.0
    R[#R + 1] = tps[m] > 0 and tps[j] / tps[m] or 1.0
    T[#T + 1] = thr[j]
  end
  P[#P + 1], R[#R + 1] = 1.0, 0.0
  return P, R, T
end

--- metrics.average_precision(is_positive, scores) -> sklearn.metrics.average_precision_score (step integral)
function metrics.average_precision(truth, scores)
  local P, R = metrics.precision_recall_curve(truth, scores)
  local s = 0.0
  for i = 1, #R - 1 do s = s - (R[i + 1] - R[i]) * P[i] end
  return s
end

--- m:reliability() -> per confidence bin {lo, hi, count, confidence (mean), accuracy}: the reliability
-- diagram behind ece (bins with no sample have count 0 and nil means)
function Classification:reliability()
  local out = {}
  for b = 1, self.ece_bins do
    local cnt = self.bin_count[b]
    out[b] = {lo = (b - 1) / self.ece_bins, hi = b / self.ece_bins, count = cnt,
              confidence = cnt > 0 and self.bin_conf[b] / cnt or nil,
              accuracy = cnt > 0 and self.bin_correct[b] / cnt or nil}
  end
  return out
end

return metrics
