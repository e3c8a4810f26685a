-- aviary.manifold: PCA, t-SNE and trustworthiness against scikit-learn 1.2.1
-- (/usr/bin/python3 with python3-sklearn). The data go to Python in one
-- safetensors file, read there with numpy; all sklearn references are computed
-- by one Python process and compared there or here.
local av = require "aviary"
local manifold = require "aviary.manifold"
local cjson = require "cjson"

local sklearn_ok
local function have_sklearn()
  if sklearn_ok == nil then
    sklearn_ok = os.execute(av_test.python_bin .. " -c 'import sklearn, numpy' >/dev/null 2>&1") == true
  end
  return sklearn_ok
end

-- 6 gaussian clusters in 50-d, n points (float32), deterministic
local function clusters(n, d, k, seed)
  av.manual_seed(seed)
  local centers = av.randn(k, d) * 4
  local labels = av.arange(0, n):long() % k
  return (centers:index_select(1, labels + 1) + av.randn(n, d)):float()
end

local PY_LOAD = [==[
import json, struct, sys
import numpy as np
def load_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); base = 8 + n; out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        dt = {"F32": np.float32, "F64": np.float64, "I64": np.int64}[v["dtype"]]
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[base + s:base + e], dtype=dt).reshape(v["shape"]).copy()
    return out
]==]

local function run_python(body, tensors)
  local fin = av_test.tmpname(".safetensors")
  av.save(fin, tensors)
  local py = av_test.tmpname(".py")
  local f = assert(io.open(py, "w"))
  f:write(PY_LOAD, "d = load_st(sys.argv[1])\n", body)
  f:close()
  local ok, out = av_test.python(py, fin)
  os.remove(fin)
  os.remove(py)
  assert(ok, "python failed: " .. tostring(out))
  return cjson.decode(out:match("[^\n]*$") ~= "" and out:match("[^\n]*$") or out)
end

-- fn must raise an error matching the Lua pattern pat
local function err_like(fn, pat)
  local ok, err = pcall(fn)
  if ok then error("expected an error matching " .. pat .. ", got none", 2) end
  if not tostring(err):find(pat) then error(("expected an error matching %q, got %q"):format(pat, tostring(err)), 2) end
end

local function max_abs_diff(a, b)
  return (a:double() - b:double()):abs():max():item()
end

describe("manifold.pca", function()
  -- data with well separated variances: Z * scales, rotated
  av.manual_seed(11)
  local N, D = 300, 20
  local scales = av.linspace(6, 0.5, D):double()
  local R = av.randn(D, D):double()
  local X = (av.randn(N, D):double() * scales):matmul(R) + 3
  local X2 = av.randn(40, D):double() * 2
  local Xwide = av.randn(30, 80):double() * av.linspace(3, 1, 80):double()
  local p = manifold.pca(X, {n_components = 5})
  local pw = manifold.pca(X, {n_components = 4, whiten = true})
  local pwide = manifold.pca(Xwide, {n_components = 6})

  it("returns the documented fields", function()
    assert.same({5, D}, p.components:size())
    assert.equal("aviary.FloatTensor", p.components:type())
    assert.equal(5, #p.explained_variance)
    assert.equal(5, #p.explained_variance_ratio)
    assert.equal(5, #p.singular_values)
    assert.equal(N, p.n_samples)
    assert.same({N, 5}, p.embedding:size())
    assert.same({D}, p.mean:size())
    for j = 2, 5 do assert.truthy(p.explained_variance[j] <= p.explained_variance[j - 1]) end
  end)

  it("accepts float32 and strided inputs with the same result", function()
    local Xt = X:t():contiguous():float():t() -- a transposed (non-contiguous) float32 view
    local q = manifold.pca(Xt, {n_components = 5})
    assert.truthy(max_abs_diff(q.components, p.components) < 1e-4)
    assert.truthy(math.abs(q.explained_variance[1] / p.explained_variance[1] - 1) < 1e-5)
  end)

  it("matches sklearn PCA(svd_solver='full') with its svd_flip signs (u-based)", function()
    if not have_sklearn() then skip("python3-sklearn not installed") end
    local r = run_python([==[
from sklearn.decomposition import PCA
out = {}
def cmp(name, X, k, whiten, X2=None):
    p = PCA(n_components=k, svd_solver="full", whiten=whiten).fit(X)
    o = {"comp": float(np.abs(p.components_ - d[name + ".comp"]).max()),
         "ev": float(np.abs(p.explained_variance_ / d[name + ".ev"] - 1).max()),
         "ratio": float(np.abs(p.explained_variance_ratio_ - d[name + ".ratio"]).max()),
         "sv": float(np.abs(p.singular_values_ / d[name + ".sv"] - 1).max()),
         "mean": float(np.abs(p.mean_ - d[name + ".mean"]).max()),
         "emb": float(np.abs(p.transform(X) - d[name + ".emb"]).max() / np.abs(p.transform(X)).max())}
    if X2 is not None:
        o["t2"] = float(np.abs(p.transform(X2) - d[name + ".t2"]).max() / np.abs(p.transform(X2)).max())
    out[name] = o
cmp("p", d["X"], 5, False, d["X2"])
cmp("pw", d["X"], 4, True, d["X2"])
cmp("pwide", d["Xwide"], 6, False)
print(json.dumps(out))
]==], (function()
      local t = {X = X, X2 = X2, Xwide = Xwide}
      for name, q in pairs({p = p, pw = pw, pwide = pwide}) do
        t[name .. ".comp"] = q.components:double()
        t[name .. ".ev"] = av.tensor(q.explained_variance, {dtype = "float64"})
        t[name .. ".ratio"] = av.tensor(q.explained_variance_ratio, {dtype = "float64"})
        t[name .. ".sv"] = av.tensor(q.singular_values, {dtype = "float64"})
        t[name .. ".mean"] = q.mean:double()
        t[name .. ".emb"] = q.embedding:double()
        if name ~= "pwide" then t[name .. ".t2"] = q:transform(X2):double() end
      end
      return t
    end)())
    for name, o in pairs(r) do
      for key, v in pairs(o) do
        assert.truthy(v < 1e-4, ("%s.%s differs from sklearn by %g"):format(name, key, v))
      end
    end
  end)

  it("rejects bad arguments with clear errors", function()
    err_like(function() manifold.pca(av.randn(10)) end, "aviary.manifold.pca: X.*2%-D")
    err_like(function() manifold.pca(X, {n_components = 30}) end, "n_components must be in 1..20")
    err_like(function() manifold.pca(X, {n_comp = 2}) end, "unknown option \"n_comp\".*n_components")
    err_like(function() manifold.pca(av.randn(1, 4)) end, "at least 2 samples")
    local bad = X:clone()
    bad[{3, 4}] = 0 / 0
    err_like(function() manifold.pca(bad, {n_components = 2}) end, "non%-finite.*row 3, column 4")
    err_like(function() manifold.pca(av.randint(0, 3, {5, 3}), {n_components = 2}) end, "float32 or float64")
    err_like(function() p:transform(av.randn(3, 7)) end, "7 features")
  end)
end)

describe("manifold.tsne", function()
  local N = 600
  local X = clusters(N, 50, 6, 5)
  local opts = {perplexity = 30, n_iter = 1000, seed = 0}
  local t0 = av.clock()
  local Y, info = manifold.tsne(X, opts)
  local t_bh = av.clock() - t0
  local Xs = X:narrow(1, 1, 240)
  local Ye, info_e = manifold.tsne(Xs, {method = "exact", perplexity = 20, seed = 0})
  local nb, sq, P = manifold._joint_probabilities(X:double(), 30)
  local ref -- sklearn's results, computed once

  local function reference()
    if ref then return ref end
    ref = run_python([==[
from sklearn.manifold import TSNE, trustworthiness
from sklearn.manifold import _utils
from sklearn.neighbors import NearestNeighbors
import time
X = d["X"]; Xs = d["Xs"]
out = {}
t0 = time.time()
ts = TSNE(n_components=2, perplexity=30, init="pca", learning_rate="auto", method="barnes_hut",
          random_state=0, n_jobs=2)
Ysk = ts.fit_transform(X)
out["sk_seconds"] = time.time() - t0
out["sk_kl"] = float(ts.kl_divergence_); out["sk_n_iter"] = int(ts.n_iter_)
out["tw_sk"] = trustworthiness(X, Ysk, n_neighbors=5)
out["tw_ours"] = trustworthiness(X, d["Y"], n_neighbors=5)
out["tw_ours_10"] = trustworthiness(X, d["Y"], n_neighbors=10)
te = TSNE(n_components=2, perplexity=20, init="pca", learning_rate="auto", method="exact", random_state=0)
Yse = te.fit_transform(Xs)
out["ex_sk_kl"] = float(te.kl_divergence_)
out["ex_tw_sk"] = trustworthiness(Xs, Yse, n_neighbors=5)
out["ex_tw_ours"] = trustworthiness(Xs, d["Ye"], n_neighbors=5)
# the conditional P over the neighbours (sklearn's _joint_probabilities_nn before symmetrising)
Xd = X.astype(np.float64)
k = min(X.shape[0] - 1, int(3.0 * 30 + 1))
nn = NearestNeighbors(n_neighbors=k).fit(Xd)
G = nn.kneighbors_graph(mode="distance"); G.data **= 2; G.sort_indices()
dist = G.data.reshape(X.shape[0], -1).astype(np.float32)
cp = _utils._binary_search_perplexity(dist, 30.0, 0)
cols = G.indices.reshape(X.shape[0], -1)
mine_nb = d["nb"] - 1; mine_P = d["P"]
same = bool(all(set(cols[i]) == set(mine_nb[i]) for i in range(X.shape[0])))
dp = 0.0
for i in range(X.shape[0]):
    m = dict(zip(mine_nb[i].tolist(), mine_P[i].tolist()))
    dp = max(dp, max(abs(cp[i, j] - m.get(c, 0.0)) for j, c in enumerate(cols[i])))
out["nb_same"] = same; out["P_maxdiff"] = dp
out["sq_maxdiff"] = float(np.abs(np.sort(d["sq"], axis=1) - np.sort(G.data.reshape(X.shape[0], -1), axis=1)).max())
# trustworthiness of our function on fixed embeddings
out["tw_check"] = [trustworthiness(Xs, d["Ye"], n_neighbors=k2) for k2 in (1, 5, 12)]
print(json.dumps(out))
]==], {X = X, Xs = Xs, Y = Y, Ye = Ye, nb = nb, sq = sq, P = P})
    return ref
  end

  it("returns an N x 2 float32 embedding and info", function()
    assert.same({N, 2}, Y:size())
    assert.equal("aviary.FloatTensor", Y:type())
    local s = Y:double():abs():sum():item()
    assert.truthy(s == s and s < math.huge, "non-finite embedding")
    assert.truthy(info.kl_divergence > 0 and info.kl_divergence < 5, tostring(info.kl_divergence))
    assert.equal(1000, info.n_iter)
    assert.near(math.max(N / 12 / 4, 50), info.learning_rate, 1e-12)
    assert.truthy(info.seconds > 0)
  end)

  it("conditional P over the neighbours matches sklearn's _binary_search_perplexity to 1e-5", function()
    if not have_sklearn() then skip("python3-sklearn not installed") end
    local r = reference()
    assert.truthy(r.nb_same, "the neighbour sets differ from sklearn's")
    assert.truthy(r.P_maxdiff < 1e-5, "max |P - P_sklearn| = " .. r.P_maxdiff)
    assert.truthy(r.sq_maxdiff < 1e-6 * 1e4, "squared distances differ by " .. r.sq_maxdiff)
    -- each row is a distribution
    local rows = P:sum(2)
    assert.truthy((rows - 1):abs():max():item() < 1e-9)
  end)

  it("Barnes-Hut: trustworthiness within 0.01 of sklearn's TSNE, KL close", function()
    if not have_sklearn() then skip("python3-sklearn not installed") end
    local r = reference()
    print(("# barnes_hut N=%d: ours tw %.4f KL %.4f (%.2f s), sklearn tw %.4f KL %.4f (%.2f s)"):format(N,
      r.tw_ours, info.kl_divergence, t_bh, r.tw_sk, r.sk_kl, r.sk_seconds))
    assert.truthy(math.abs(r.tw_ours - r.tw_sk) < 0.01, ("trustworthiness %g vs sklearn %g"):format(r.tw_ours, r.tw_sk))
    assert.truthy(math.abs(info.kl_divergence - r.sk_kl) < 0.1 * r.sk_kl,
      ("KL %g vs sklearn %g"):format(info.kl_divergence, r.sk_kl))
  end)

  it("exact: trustworthiness within 0.01 of sklearn's exact TSNE, KL close", function()
    if not have_sklearn() then skip("python3-sklearn not installed") end
    local r = reference()
    print(("# exact N=240: ours tw %.4f KL %.4f, sklearn tw %.4f KL %.4f"):format(r.ex_tw_ours,
      info_e.kl_divergence, r.ex_tw_sk, r.ex_sk_kl))
    assert.same({240, 2}, Ye:size())
    assert.truthy(math.abs(r.ex_tw_ours - r.ex_tw_sk) < 0.01)
    assert.truthy(math.abs(info_e.kl_divergence - r.ex_sk_kl) < 0.1 * r.ex_sk_kl)
  end)

  it("trustworthiness equals sklearn.manifold.trustworthiness", function()
    if not have_sklearn() then skip("python3-sklearn not installed") end
    local r = reference()
    assert.near(r.tw_ours, manifold.trustworthiness(X, Y), 1e-9)
    assert.near(r.tw_ours_10, manifold.trustworthiness(X, Y, {n_neighbors = 10}), 1e-9)
    for i, k in ipairs({1, 5, 12}) do
      assert.near(r.tw_check[i], manifold.trustworthiness(Xs, Ye, k), 1e-9)
    end
  end)

  it("is deterministic for a seed and the same for any thread count", function()
    local Xm = X:narrow(1, 1, 300)
    local threads = av.get_num_threads()
    local a = manifold.tsne(Xm, {perplexity = 15, n_iter = 300, init = "random", seed = 7})
    local b = manifold.tsne(Xm, {perplexity = 15, n_iter = 300, init = "random", seed = 7})
    av.set_num_threads(1)
    local c = manifold.tsne(Xm, {perplexity = 15, n_iter = 300, init = "random", seed = 7})
    av.set_num_threads(threads)
    local e = manifold.tsne(Xm, {perplexity = 15, n_iter = 300, init = "random", seed = 8})
    assert.equal(0, max_abs_diff(a, b))
    assert.equal(0, max_abs_diff(a, c))
    assert.truthy(max_abs_diff(a, e) > 0)
    -- a given initial embedding, 3 components (octree), exact with 3 components
    local init = av.randn(300, 3):float() * 1e-4
    local y3 = manifold.tsne(Xm, {n_components = 3, init = init, perplexity = 15, n_iter = 300})
    assert.same({300, 3}, y3:size())
    local y3e = manifold.tsne(Xm:narrow(1, 1, 100), {n_components = 3, method = "exact", perplexity = 10, n_iter = 260})
    assert.same({100, 3}, y3e:size())
  end)

  it("calls progress every 50 iterations and stops on its errors", function()
    local Xm = X:narrow(1, 1, 120)
    local calls = {}
    manifold.tsne(Xm, {perplexity = 10, n_iter = 300, progress = function(i, kl) calls[#calls + 1] = {i, kl} end})
    assert.equal(6, #calls)
    assert.equal(50, calls[1][1])
    assert.equal(300, calls[6][1])
    err_like(function()
      manifold.tsne(Xm, {perplexity = 10, n_iter = 300, progress = function() error("stop here") end})
    end, "stop here")
  end)

  it("rejects bad input with errors naming the function and argument", function()
    local Xm = X:narrow(1, 1, 50)
    err_like(function() manifold.tsne(av.randn(50)) end, "aviary.manifold.tsne: X %(argument 1%).*2%-D")
    err_like(function() manifold.tsne("x") end, "aviary.manifold.tsne: X %(argument 1%) must be")
    err_like(function() manifold.tsne(Xm, {perplexity = 50}) end,
      "aviary.manifold.tsne: perplexity %(50%) must be less than the number of samples N %(50%)")
    err_like(function() manifold.tsne(Xm, {perplexty = 5}) end,
      "aviary.manifold.tsne: unknown option \"perplexty\" %(valid: .*perplexity")
    err_like(function() manifold.tsne(av.randn(1, 5)) end, "at least 2 samples")
    local bad = Xm:clone()
    bad[{7, 2}] = 0 / 0
    err_like(function() manifold.tsne(bad, {perplexity = 5}) end,
      "aviary.manifold.tsne: X has a non%-finite value %(nan%) at row 7, column 2")
    bad[{7, 2}] = 1 / 0
    err_like(function() manifold.tsne(bad, {perplexity = 5}) end, "non%-finite value %(inf%)")
    err_like(function() manifold.tsne(Xm, {method = "fast"}) end, "method must be 'barnes_hut' or 'exact'")
    err_like(function() manifold.tsne(Xm, {init = "spectral"}) end, "init must be 'pca', 'random'")
    err_like(function() manifold.tsne(Xm, {perplexity = 5, init = av.zeros(49, 2)}) end,
      "init must be an 50 x 2 tensor")
    err_like(function() manifold.tsne(Xm, {learning_rate = -1}) end, "learning_rate must be 'auto'")
    err_like(function() manifold.tsne(Xm, {n_components = 4}) end, "at most 3 for method 'barnes_hut'")
    err_like(function() manifold.tsne(Xm, {angle = 2}) end, "angle must be in")
    err_like(function() manifold.trustworthiness(Xm, av.randn(49, 2)) end,
      "aviary.manifold.trustworthiness: X and Y must have the same number of rows")
    err_like(function() manifold.trustworthiness(Xm, av.randn(50, 2), {n_neighbors = 25}) end,
      "n_neighbors %(25%) should be")
    err_like(function() manifold.trustworthiness(Xm, av.randn(50, 2), {k = 3}) end, "unknown option")
  end)
end)
