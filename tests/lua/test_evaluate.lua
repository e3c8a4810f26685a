-- Evaluation: scikit-learn's classification report, precision-recall curves and average precision
-- against python3-sklearn; then recipes/evaluate.lua on a small run trained here: predictions.csv,
-- metrics.json (checked against sklearn from the CSV and the saved logits), every plot decodes,
-- report.html opens in headless Chromium without console errors and with every image decoded,
-- recipes/compare.lua; and the errors: no checkpoint, a class-count mismatch, an empty test split,
-- a layer that does not exist.
local av = require "aviary"
local json = require "aviary.json"
local metrics = require "aviary.metrics"

local root = av_test.root
local host = root .. "/bin/aviary"

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function exists(p) return os.execute("test -e " .. sh(p)) == true end
local function have_py(mod)
  return os.execute(av_test.python_bin .. " -c 'import " .. mod .. "' >/dev/null 2>&1") == true
end
local function pyfile(src)
  local p = av_test.tmpname(".py")
  local f = assert(io.open(p, "w"))
  f:write(src)
  f:close()
  return p
end

local conv_algo = exists("/usr/include/oneapi/dnnl/dnnl.h") and "onednn" or "im2col"
local env = ("OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} AVIARY_CONV_ALGO=%s AVIARY_NUM_THREADS=2 "):format(conv_algo)
local function run(script, args)
  local parts = {}
  for _, a in ipairs(args) do parts[#parts + 1] = sh(a) end
  local p = io.popen(env .. sh(host) .. " " .. sh(root .. "/recipes/" .. script) .. " " .. table.concat(parts, " ")
    .. " 2>&1; echo \"rc=$?\"")
  local text = p:read("a")
  p:close()
  return tonumber(text:match("rc=(%d+)%s*$")), text
end

describe("metrics reports against scikit-learn", function()
  it("classification_report: the text and output_dict, with and without classes that never occur", function()
    if not have_py("sklearn") then skip("python3-sklearn not installed") end
    for _, case in ipairs({{C = 6, N = 240, drop = false}, {C = 7, N = 120, drop = true}}) do
      av.manual_seed(11 + case.C)
      local logits = av.randn(case.N, case.C) * 1.5
      local target = av.randint(1, case.C + 1, {case.N})
      if case.drop then                 -- class 7: never a target, never predicted
        logits[{{}, 7}] = -100
        target = target:clamp(1, 6)
      end
      local r = metrics.classification(logits, target, case.C)
      local names = {}
      for c = 1, case.C do names[c] = ("%03d.Species_%s"):format(c, ("x"):rep(c)) end
      local dict, text = metrics.classification_report(r, names)
      local _, pred = logits:max(2)
      local fin = av_test.tmpname(".json")
      json.write(fin, {y = target:tolist(), p = pred:view(-1):tolist(), names = names, C = case.C})
      local ok, out = av_test.python(pyfile([==[
import json, sys
from sklearn.metrics import classification_report
d = json.load(open(sys.argv[1]))
y = [v - 1 for v in d["y"]]; p = [v - 1 for v in d["p"]]
kw = dict(labels=list(range(d["C"])), target_names=d["names"], zero_division=0)
print(json.dumps({"text": classification_report(y, p, digits=4, **kw),
                  "dict": classification_report(y, p, output_dict=True, **kw)}))
]==]), fin)
      assert.truthy(ok, out)
      local ref = json.decode(out)
      assert.equal(text, ref.text)
      for k, v in pairs(ref.dict) do
        assert.truthy(dict[k] ~= nil, "missing " .. k)
        if type(v) == "table" then
          for f, x in pairs(v) do assert.near(dict[k][f], x, 1e-12, k .. " " .. f) end
        else
          assert.near(dict[k], v, 1e-12, k)
        end
      end
      assert.equal(dict["micro avg"] ~= nil, case.drop)
    end
  end)

  it("precision_recall_curve and average_precision, with ties", function()
    if not have_py("sklearn") then skip("python3-sklearn not installed") end
    av.manual_seed(5)
    local n = 300
    local scores = (av.rand(n) * 20):floor():div(20):tolist()     -- many tied scores
    local truth = (av.rand(n) + av.tensor(scores) * 0.5):gt(0.8):tolist()
    local P, R, T = metrics.precision_recall_curve(truth, scores)
    local fin = av_test.tmpname(".json")
    local t01 = {}
    for i, v in ipairs(truth) do t01[i] = (v == true or v == 1) and 1 or 0 end
    json.write(fin, {y = t01, s = scores})
    local ok, out = av_test.python(pyfile([==[
import json, sys
from sklearn.metrics import precision_recall_curve, average_precision_score
d = json.load(open(sys.argv[1]))
p, r, t = precision_recall_curve(d["y"], d["s"])
print(json.dumps({"p": p.tolist(), "r": r.tolist(), "t": t.tolist(), "ap": average_precision_score(d["y"], d["s"])}))
]==]), fin)
    assert.truthy(ok, out)
    local ref = json.decode(out)
    assert.equal(#P, #ref.p)
    for i = 1, #P do
      assert.near(P[i], ref.p[i], 1e-12)
      assert.near(R[i], ref.r[i], 1e-12)
    end
    for i = 1, #T do assert.near(T[i], ref.t[i], 1e-12) end
    assert.near(metrics.average_precision(truth, scores), ref.ap, 1e-12)
  end)

  it("most_confused orders the off-diagonal cells", function()
    local cm = av.tensor({{5, 2, 0}, {4, 3, 1}, {0, 2, 7}}, {dtype = "int64"})
    local top = metrics.most_confused(cm, 3, {"a", "b", "c"})
    assert.equal(#top, 3)
    assert.equal(top[1].true_name .. ">" .. top[1].predicted_name, "b>a")
    assert.equal(top[1].count, 4)
    assert.near(top[1].rate, 0.5, 1e-12)
    assert.equal(top[2].true_name .. ">" .. top[2].predicted_name, "a>b")   -- 2 of 7 before c>b's 2 of 9 (by rate)
    assert.equal(top[3].true_name .. ">" .. top[3].predicted_name, "c>b")
  end)
end)

-- a small run trained here: 4 synthetic species, ResNet-18 at 48 px, 2 epochs
local tmp = av_test.tmpname("_evaluate")
local data_dir = tmp .. "/images"
local run_dir = tmp .. "/models/small"
local trained, train_log = nil, nil
local function ensure_run()
  if trained ~= nil then return trained end
  os.execute("mkdir -p " .. sh(tmp))
  require("aviary.data.synthetic").generate({out = tmp .. "/syn", classes = 4, per_class = 10, size = "96x72",
    progress = false, jobs = 1})
  require("aviary.data.cub").prepare(tmp .. "/syn/CUB_200_2011", data_dir, {progress = false})
  local rc, out = run("train.lua", {"--config", "resnet18", "DATA.dir=" .. data_dir, "DIRS.working_dir=" .. tmp .. "/models",
    "MODEL.num_classes=4", "DATA.crop=48", "DATA.resize=56", "TRAIN.batch_size=4", "TRAIN.num_epochs=2",
    "TRAIN.optimizer.lr=0.01", "TRAIN.num_workers=1", "--run-name", "small", "--quiet"})
  trained, train_log = rc == 0, out
  return trained
end

local eval_out
local function ensure_eval()
  if eval_out then return eval_out end
  assert(ensure_run(), train_log)
  local rc, out = run("evaluate.lua", {"--run", run_dir, "--perplexity", "5", "--grid", "8", "--quiet"})
  assert(rc == 0, out)
  eval_out = out
  return out
end

local function read_csv(path)
  local rows, head = {}, nil
  for line in io.lines(path) do
    local cells = {}
    for c in (line .. ","):gmatch("([^,]*),") do cells[#cells + 1] = c end
    if not head then head = cells else
      local r = {}
      for i, h in ipairs(head) do r[h] = cells[i] end
      rows[#rows + 1] = r
    end
  end
  return rows, head
end

describe("recipes/evaluate.lua", function()
  it("writes predictions.csv, metrics.json, the plots, the features and report.html", function()
    local out = ensure_eval()
    assert.truthy(out:find("report: " .. run_dir .. "/report.html", 1, true), out)
    local rows, head = read_csv(run_dir .. "/predictions.csv")
    local m = json.read(run_dir .. "/metrics.json")
    assert.equal(#rows, m.n)
    assert.equal(head[1], "path")
    assert.equal(#head, 7 + 3 * 4)            -- top-4 of 4 classes
    local right = 0
    for _, r in ipairs(rows) do
      assert.truthy(exists(r.path), r.path)
      if r.correct == "1" then right = right + 1 end
      assert.equal(r.pred, r.top1)
      assert.equal(r.correct == "1", r["true"] == r.pred)
    end
    assert.near(m.top1, right / #rows, 1e-12)
    assert.equal(#m.per_class, 4)
    assert.equal(#m.confusion, 4)
    for _, k in ipairs({"curves", "per_class_f1", "per_class_precision", "per_class_recall", "worst_classes", "confusion",
                        "predictions", "scores", "reliability", "pr_curves", "pca", "tsne", "tsne_collage"}) do
      local p = run_dir .. "/plots/" .. k .. ".png"
      assert.truthy(exists(p), "missing " .. p)
      local img = require("aviary.image").load(p)
      assert.truthy(img:size(2) >= 150 and img:size(3) >= 300, k)
    end
    local f = require("aviary.features").load(run_dir .. "/features/" .. m.layer:gsub("[^%w%._-]", "_") .. ".safetensors")
    assert.equal(f.features:size(1), m.n)
    assert.equal(f.features:size(2), 512)
    assert.equal(#f.paths, m.n)
  end)

  it("metrics.json equals scikit-learn on the same predictions", function()
    if not have_py("sklearn") or not have_py("torch") then skip("python3-sklearn or python3-torch not installed") end
    ensure_eval()
    local m = json.read(run_dir .. "/metrics.json")
    local ok, out = av_test.python(pyfile([==[
import csv, json, sys
import numpy as np
from sklearn import metrics as M
sys.path.insert(0, sys.argv[3])
import st
rows = list(csv.DictReader(open(sys.argv[1])))
y = np.array([int(r["true"]) - 1 for r in rows]); p = np.array([int(r["pred"]) - 1 for r in rows])
feat = {k: v.numpy() for k, v in st.load(sys.argv[2])[0].items()}
logits = feat["logits"].astype(np.float64)
pr = np.exp(logits - logits.max(1, keepdims=True)); pr /= pr.sum(1, keepdims=True)
C = logits.shape[1]; labels = list(range(C))
print(json.dumps({"report": M.classification_report(y, p, labels=labels, output_dict=True, zero_division=0),
  "log_loss": M.log_loss(y, pr, labels=labels), "top5": M.top_k_accuracy_score(y, logits, k=min(5, C - 1), labels=labels),
  "cm": M.confusion_matrix(y, p, labels=labels).tolist(),
  "ap": [M.average_precision_score(y == c, pr[:, c]) if (y == c).any() else None for c in range(C)],
  "labels_match": bool((feat["labels"] - 1 == y).all())}))
]==]), run_dir .. "/predictions.csv", run_dir .. "/features/" .. m.layer:gsub("[^%w%._-]", "_") .. ".safetensors", root .. "/tests/parity")
    assert.truthy(ok, out)
    local ref = json.decode(out)
    assert.truthy(ref.labels_match)
    for i, c in ipairs(m.per_class) do
      local r = ref.report[tostring(i - 1)]
      assert.near(c.precision, r.precision, 1e-12)
      assert.near(c.recall, r.recall, 1e-12)
      assert.near(c.f1, r["f1-score"], 1e-12)
      assert.equal(c.support, math.tointeger(r.support))
      if ref.ap[i] then assert.near(c.average_precision, ref.ap[i], 1e-9) end
    end
    for _, k in ipairs({"macro", "weighted"}) do
      assert.near(m[k].precision, ref.report[k .. " avg"].precision, 1e-12)
      assert.near(m[k].recall, ref.report[k .. " avg"].recall, 1e-12)
      assert.near(m[k].f1, ref.report[k .. " avg"]["f1-score"], 1e-12)
    end
    assert.near(m.top1, ref.report.accuracy or ref.report["micro avg"].precision, 1e-12)
    assert.near(m.log_loss, ref.log_loss, 1e-5)
    for i = 1, 4 do for j = 1, 4 do assert.equal(m.confusion[i][j], ref.cm[i][j]) end end
  end)

  it("report.html loads in headless Chromium without console errors, and its images decode", function()
    ensure_eval()
    local node = os.execute("command -v node >/dev/null 2>&1") == true
    if not node then skip("node not installed (make test-deps)") end
    if not exists(root .. "/tools/node/node_modules/playwright-core") then skip("playwright-core missing (make test-deps)") end
    if not exists(os.getenv("CHROMIUM") or "/usr/bin/chromium") then skip("chromium not installed (make test-deps)") end
    local p = io.popen("node " .. sh(root .. "/tools/node/check_html.js") .. " " .. sh(run_dir .. "/report.html")
      .. " 2>&1; echo \"rc=$?\"")
    local text = p:read("a")
    p:close()
    local rc = tonumber(text:match("rc=(%d+)%s*$"))
    local r = json.decode(text:match("^[^\n]*"))
    assert.equal(rc, 0, text)
    assert.equal(#r.console_errors, 0, text)
    assert.equal(#r.page_errors, 0, text)
    assert.truthy(#r.images >= 13, text)
    for _, img in ipairs(r.images) do assert.truthy(img.ok and img.w > 100, text) end
    assert.truthy(r.page_width <= 1366, "the page scrolls sideways at 1366 px: " .. r.page_width)
  end)

  it("compare.lua puts two evaluated runs side by side", function()
    ensure_eval()
    local out_dir = tmp .. "/compare"
    local rc, out = run("compare.lua", {run_dir, run_dir, "--out", out_dir})
    assert.equal(rc, 0, out)
    for _, f in ipairs({"compare_metrics.png", "compare_curves.png", "compare.html", "compare.json"}) do
      assert.truthy(exists(out_dir .. "/" .. f), f)
    end
    rc, out = run("compare.lua", {data_dir})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("evaluate it first", 1, true), out)
  end)
end)

local function browser_check(path)
  if os.execute("command -v node >/dev/null 2>&1") ~= true then skip("node not installed (make test-deps)") end
  if not exists(root .. "/tools/node/node_modules/playwright-core") then skip("playwright-core missing (make test-deps)") end
  if not exists(os.getenv("CHROMIUM") or "/usr/bin/chromium") then skip("chromium not installed (make test-deps)") end
  local p = io.popen("node " .. sh(root .. "/tools/node/check_html.js") .. " " .. sh(path) .. " 2>&1; echo \"rc=$?\"")
  local text = p:read("a")
  p:close()
  return tonumber(text:match("rc=(%d+)%s*$")), json.decode(text:match("^[^\n]*")), text
end

describe("recipes/interpret.lua", function()
  it("writes attribution panels, feature maps, a feature visualisation and the pointing game, and adds them to report.html", function()
    ensure_eval()
    local rc, out = run("interpret.lua", {"--run", run_dir, "--n", "1", "--methods", "saliency,integrated_gradients,gradcam,occlusion",
      "--n-steps", "8", "--pointing", "6", "--boxes", tmp .. "/syn/CUB_200_2011", "--optvis", "1", "--optvis-steps", "6", "--quiet"})
    assert.equal(rc, 0, out)
    local d = run_dir .. "/interpret"
    for _, f in ipairs({"panels_1.png", "feature_maps.png", "optvis.png", "pointing.json", "summary.json"}) do
      assert.truthy(exists(d .. "/" .. f), "missing " .. f .. "\n" .. out)
    end
    local img = require("aviary.image").load(d .. "/panels_1.png")
    assert.truthy(img:size(3) >= 600, "the panel figure holds the original and four methods side by side")
    local pg = json.read(d .. "/pointing.json")
    assert.equal(#pg.rows, 3)
    assert.equal(pg.n_images, 6)
    for _, r in ipairs(pg.rows) do
      assert.truthy(r.hits >= 0 and r.hits <= r.n and r.baseline > 0 and r.baseline <= 1, r.method)
    end
    local s = json.read(d .. "/summary.json")
    assert.truthy(s.optvis and s.optvis.factors[1].visualisation, "the feature visualisation's activation is measured")
    local html = io.open(run_dir .. "/report.html"):read("a")
    assert.truthy(html:find("Interpretation", 1, true) and html:find("Pointing game", 1, true), "report.html has the section")
    local brc, r, text = browser_check(run_dir .. "/report.html")
    assert.equal(brc, 0, text)
    assert.equal(#r.console_errors + #r.page_errors, 0, text)
    for _, i in ipairs(r.images) do assert.truthy(i.ok, text) end
  end)

  it("bad arguments: an unknown method, a layer that does not exist, a target out of range", function()
    assert(ensure_run(), train_log)
    local rc, out = run("interpret.lua", {"--run", run_dir, "--methods", "saliency,gradcamm", "--quiet"})
    assert.equal(rc, 2, out)
    assert.truthy(out:find("unknown method 'gradcamm'", 1, true) and out:find("'gradcam'", 1, true), out)
    rc, out = run("interpret.lua", {"--run", run_dir, "--layer", "layer5", "--quiet"})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("no layer 'layer5'", 1, true) and out:find("layer4", 1, true), out)
    rc, out = run("interpret.lua", {"--run", run_dir, "--target", "9", "--quiet"})
    assert.equal(rc, 2, out)
    assert.truthy(out:find("1..4", 1, true), out)
  end)
end)

describe("recipes/export_onnx.lua and recipes/predict.lua", function()
  local have_ort = function()
    return os.execute("command -v node >/dev/null 2>&1") == true and exists(root .. "/tools/node/node_modules/onnxruntime-node")
  end
  it("exports the run with its metadata, ONNX Runtime agrees, and predict names the species from the file alone", function()
    assert(ensure_run(), train_log)
    local rc, out = run("export_onnx.lua", {"--run", run_dir, "--verify", "3"})
    assert.equal(rc, 0, out)
    assert.truthy(exists(run_dir .. "/model.onnx"), out)
    if have_ort() then
      assert.truthy(out:find("top-1 agreement 3/3", 1, true), out)
    else
      assert.truthy(out:find("verification skipped", 1, true), out)
    end
    local g = require("aviary.onnx").load(run_dir .. "/model.onnx")
    assert.equal(#g.metadata.class_names, 4)
    assert.equal(g.metadata.preprocessing.input_size, 48)
    local csv = tmp .. "/pred.csv"
    rc, out = run("predict.lua", {"--model", run_dir .. "/model.onnx", "--image", data_dir .. "/test", "--topk", "2", "--csv", csv})
    assert.equal(rc, 0, out)
    local n = 0
    for line in io.lines(csv) do
      n = n + 1
      if n > 1 then assert.truthy(line:find("Synthetic", 1, true), line) end
    end
    local m = json.read(run_dir .. "/metrics.json")
    assert.equal(n - 1, m.n)
    -- the run folder works as a model too, and gives the same top class
    rc, out = run("predict.lua", {"--model", run_dir, "--image", data_dir .. "/test", "--topk", "1", "--csv", csv .. "2"})
    assert.equal(rc, 0, out)
    local a, b = {}, {}
    for l in io.lines(csv) do a[#a + 1] = l:match("^[^,]*,([^,]*)") end
    for l in io.lines(csv .. "2") do b[#b + 1] = l:match("^[^,]*,([^,]*)") end
    for i = 2, #a do assert.equal(a[i], b[i]) end
  end)

  it("bad input: a truncated .onnx, a missing model, a folder without images, an unreadable photo among good ones", function()
    assert(ensure_run(), train_log)
    local good = run_dir .. "/model.onnx"
    if not exists(good) then skip("needs the export test") end
    local bad = tmp .. "/truncated.onnx"
    local f = assert(io.open(good, "rb"))
    local bytes = f:read("a")
    f:close()
    f = assert(io.open(bad, "wb"))
    f:write(bytes:sub(1, #bytes // 3))
    f:close()
    local photos = av_test.root .. "/../shared/photos/eagle.jpg"
    local rc, out = run("predict.lua", {"--model", bad, "--image", photos})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("truncated or corrupt", 1, true), out)
    rc, out = run("predict.lua", {"--model", tmp .. "/nothing.onnx", "--image", photos})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("does not exist", 1, true), out)
    os.execute("mkdir -p " .. sh(tmp .. "/noimages"))
    rc, out = run("predict.lua", {"--model", good, "--image", tmp .. "/noimages"})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("no .jpg/.jpeg/.png", 1, true), out)
    local mixed = tmp .. "/mixed"
    os.execute("mkdir -p " .. sh(mixed))
    os.execute("cp " .. sh(data_dir .. "/test") .. "/*/*.jpg " .. sh(mixed) .. " 2>/dev/null; head -c 300 " .. sh(photos)
      .. " > " .. sh(mixed .. "/zz_truncated.jpg"))
    rc, out = run("predict.lua", {"--model", good, "--image", mixed, "--csv", tmp .. "/mixed.csv"})
    assert.equal(rc, 0, out)
    assert.truthy(out:find("zz_truncated.jpg: skipped", 1, true) and out:find("1 unreadable files skipped", 1, true), out)
  end)
end)

describe("recipes/evaluate.lua errors", function()
  it("a run without a checkpoint", function()
    assert(ensure_run(), train_log)
    local d = tmp .. "/models/nockpt"
    os.execute("mkdir -p " .. sh(d) .. " && cp " .. sh(run_dir .. "/config.lua") .. " " .. sh(d))
    local rc, out = run("evaluate.lua", {"--run", d})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("has no checkpoint", 1, true) and out:find("--resume", 1, true), out)
    rc, out = run("evaluate.lua", {"--run", tmp .. "/models/absent"})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("does not exist", 1, true), out)
  end)

  it("a class-count mismatch between the model and the dataset", function()
    assert(ensure_run(), train_log)
    local rc, out = run("evaluate.lua", {"--run", run_dir, "MODEL.num_classes=5", "--out", tmp .. "/mismatch"})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("the model has 5 classes", 1, true) and out:find("has 4", 1, true), out)
  end)

  it("an empty test split", function()
    assert(ensure_run(), train_log)
    local d = tmp .. "/empty"
    os.execute("mkdir -p " .. sh(d .. "/train/a") .. " " .. sh(d .. "/test/a"))
    local rc, out = run("evaluate.lua", {"--run", run_dir, "DATA.dir=" .. d, "--out", tmp .. "/empty_out"})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("empty", 1, true), out)
  end)

  it("a layer that does not exist lists the layers", function()
    assert(ensure_run(), train_log)
    local rc, out = run("evaluate.lua", {"--run", run_dir, "--layer", "layer9", "--out", tmp .. "/badlayer", "--quiet"})
    assert.equal(rc, 1, out)
    assert.truthy(out:find("no layer 'layer9'", 1, true) and out:find("layer4", 1, true) and out:find("avgpool", 1, true), out)
  end)

  it("a typo in an option names the nearest one", function()
    local rc, out = run("evaluate.lua", {"--run", run_dir, "--perplexty", "5"})
    assert.equal(rc, 2, out)
    assert.truthy(out:find("--perplexity", 1, true), out)
  end)
end)
