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
-- prediction is the arg-max logit (the first on ties); log loss is the mean
-- -log softmax(logits)[target] computed in float64; the expected calibration
-- error uses `ece_bins` equal-width confidence bins (lo, hi] over the max
-- softmax probability: sum over bins of |accuracy - mean confidence| * n_bin / N.
local av = require "aviary"

local metrics = {}

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
  self.nll_sum = self.nll_sum - logp:gather(2, t:view(N, 1)):sum():item()
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

return metrics
