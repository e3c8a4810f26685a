-- Manifold learning against scikit-learn 1.2.1 (the reference here is sklearn, not PyTorch:
-- the Python statements below run sklearn in torch_bench.py's process; threadpoolctl limits
-- sklearn's OpenMP and BLAS pools to the bench's thread count, and TSNE gets n_jobs = threads):
--  * t-SNE of 5,794 x 512 float32 features (the size of the CUB test set): 200 clusters with
--    low-rank structure plus noise, deterministic; perplexity 50, learning_rate 150, n_iter
--    1000, init 'pca', Barnes-Hut with angle 0.5 on both sides;
--  * PCA to 2 components of the same matrix (sklearn PCA(svd_solver='full')).
-- bench.lua's protocol times only; the extra numbers ride in the rows' notes: the t-SNE row
-- carries the trustworthiness (sklearn.manifold.trustworthiness, n_neighbors 5) of both
-- embeddings and the PCA row the largest differences to sklearn's components and embedding.
-- sklearn computes them after the timings, in the same Python process at exit (atexit;
-- aviary's last embedding is saved by its timed statement, a few ms), and the note, a table
-- with __concat, reads the file when bench.lua prints the row (also echoed to stderr).
-- Each side runs the t-SNE twice (warm-up + 1 timed repetition).
local N, D, CLUSTERS, RANK = 5794, 512, 200, 48
local DIR = (os.getenv("TMPDIR") or "/tmp") .. "/aviary_bench_manifold"
local XFILE, YFILE, TWFILE = DIR .. "/X.safetensors", DIR .. "/Y_aviary.safetensors", DIR .. "/trustworthiness.json"
local PCAFILE, PCAJSON = DIR .. "/pca_aviary.safetensors", DIR .. "/pca.json"

local function make_data(av)
  local g = av.get_rng_state()
  av.manual_seed(20240229)
  local basis = av.randn(RANK, D) / math.sqrt(RANK)
  local centers = av.randn(CLUSTERS, RANK) * 0.7
  local labels = av.arange(0, N):long() % CLUSTERS + 1
  local Z = centers:index_select(1, labels) + av.randn(N, RANK) * 0.9
  local X = (Z:matmul(basis) + av.randn(N, D) * 0.15):relu():float()
  av.set_rng_state(g)
  return X:contiguous()
end

local PY_COMMON = [==[
import json, struct, atexit, os
import numpy as np
from threadpoolctl import threadpool_limits
_threads = torch.get_num_threads()
_limits = threadpool_limits(limits=_threads)
def load_st(path, name):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); v = h[name]
    dt = {"F32": np.float32, "F64": np.float64}[v["dtype"]]
    s, e = v["data_offsets"]
    return np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt).reshape(v["shape"]).copy()
X = load_st(%q, "X")
]==]

local PY_TSNE = PY_COMMON .. [==[
from sklearn.manifold import TSNE, trustworthiness
Y_sk = None
def run():
    global Y_sk
    Y_sk = TSNE(n_components=2, perplexity=50, learning_rate=150, n_iter=1000, init="pca", method="barnes_hut",
                angle=0.5, random_state=0, n_jobs=_threads).fit_transform(X)
def report():
    try:
        out = {"sklearn": float(trustworthiness(X, Y_sk, n_neighbors=5))}
        if os.path.exists(%q):
            out["aviary"] = float(trustworthiness(X, load_st(%q, "Y"), n_neighbors=5))
        json.dump(out, open(%q, "w"))
    except Exception as e:
        import sys
        print("trustworthiness failed:", e, file=sys.stderr)
atexit.register(report)
]==]

local PY_PCA = PY_COMMON .. [==[
from sklearn.decomposition import PCA
def report_pca():
    p = PCA(n_components=2, svd_solver="full").fit(X)
    ours = load_st(%q, "components")
    json.dump({"components": float(np.abs(p.components_ - ours).max()),
               "embedding": float(np.abs(p.transform(X) - load_st(%q, "embedding")).max()),
               "embedding_scale": float(np.abs(p.transform(X)).max())}, open(%q, "w"))
atexit.register(report_pca)
]==]

-- a row's note that reads what Python wrote at exit, when bench.lua prints the row
local function late_note(base, file, fmt)
  return setmetatable({}, {__concat = function(a, b)
    local s = base
    local f = io.open(file)
    if f then
      local ok, t = pcall(require("cjson").decode, f:read("a"))
      f:close()
      if ok then
        local extra = fmt(t)
        s = s .. extra
        io.stderr:write(extra, "\n")
      end
    end
    if type(a) == "table" then return s .. b end
    return a .. s
  end})
end

return function(case, av)
  local manifold = require "aviary.manifold"
  local X
  local function data()
    if X then return X end
    os.execute("mkdir -p '" .. DIR .. "'")
    X = make_data(av)
    av.save(XFILE, {X = X})
    return X
  end
  os.remove(TWFILE)
  os.remove(PCAJSON)
  os.remove(YFILE)
  local name = ("manifold: t-SNE %dx%d, perplexity 50, lr 150, 1000 iter, Barnes-Hut"):format(N, D)
  case(name, function()
    local x = data()
    return function()
      local Y = manifold.tsne(x, {perplexity = 50, learning_rate = 150, n_iter = 1000, init = "pca", seed = 0})
      av.save(YFILE, {Y = Y}) -- for the trustworthiness (a few ms)
    end
  end, PY_TSNE:format(XFILE, YFILE, YFILE, TWFILE), "run()", 1, 1, late_note("vs sklearn 1.2.1 TSNE", TWFILE,
    function(t)
      return ("; trustworthiness@5: aviary %s, sklearn %s"):format(t.aviary and ("%.4f"):format(t.aviary) or "n/a",
        t.sklearn and ("%.4f"):format(t.sklearn) or "n/a")
    end))

  case(("manifold: PCA %dx%d to 2 components"):format(N, D), function()
    local x = data()
    local p = manifold.pca(x, {n_components = 2}) -- untimed: the result for the comparison
    av.save(PCAFILE, {components = p._components64, embedding = p.embedding:double()})
    return function() manifold.pca(x, {n_components = 2}) end
  end, PY_PCA:format(XFILE, PCAFILE, PCAFILE, PCAJSON), "PCA(n_components=2, svd_solver='full').fit_transform(X)", 5, 1,
    late_note("vs sklearn PCA(svd_solver='full')", PCAJSON, function(t)
      return ("; max abs difference to sklearn: components %.2g, embedding %.2g (of values up to %.3g)"):format(t.components,
        t.embedding, t.embedding_scale)
    end))
end
