--- aviary.manifold: PCA, t-SNE and trustworthiness, after scikit-learn 1.2.1.
--
-- The work is C (runtime/ml/pca.c, affinities.c, tsne.c, common.c, through the private table av._manifold):
--
--   local manifold = require "aviary.manifold"
--   local p = manifold.pca(X, {n_components = 2, whiten = false})
--     -- X: N x D float32/float64 tensor (any strides)
--     -- p.components (k x D f32: rows are the axes), p.mean (D f32),
--     -- p.explained_variance, p.explained_variance_ratio, p.singular_values (Lua arrays of k),
--     -- p.n_samples, p.n_features, p.n_components, p.whiten, p.noise_variance,
--     -- p.embedding (N x k f32, the transform of X), p:transform(X2) -> N2 x k f32
--   local Y, info = manifold.tsne(X, {perplexity = 30, ...})
--     -- Y: N x n_components f32; info: {kl_divergence, n_iter, learning_rate, seconds, seconds_affinities}
--   local tw = manifold.trustworthiness(X, Y, {n_neighbors = 5})
--
-- PCA is sklearn's PCA(svd_solver='full'): the top axes of the centred data
-- from the eigendecomposition of its covariance (or Gram) matrix in double;
-- signs follow sklearn 1.2's svd_flip(U, Vt) (u-based): in each column of
-- U = (X - mean) V / s, the entry of largest absolute value is positive.
-- explained_variance = s^2 / (N - 1); the ratio divides by the total variance.
--
-- t-SNE is sklearn.manifold.TSNE: Barnes-Hut (quadtree for 2-d, octree for 3-d)
-- over the k = min(N - 1, int(3 perplexity + 1)) nearest neighbours, or
-- 'exact' over all pairs; the same binary search for the conditional P, the
-- same gradient descent (250 iterations with early exaggeration and momentum
-- 0.5, then momentum 0.8, gains, checks every 50 iterations). The random
-- initialisation draws from the Philox generator keyed by opts.seed (so it
-- differs from numpy's), the 'pca' one is the exact PCA scaled to a standard
-- deviation of 1e-4 in its first column. OpenMP threads: av.set_num_threads.
local core = require "aviary.core"
local C = core._manifold

local M = {}

local function fail(fn, msg, level)
  error(("aviary.manifold.%s: %s"):format(fn, msg), (level or 2) + 1)
end

local function check_opts(opts, allowed, fn)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(fn, ("options must be a table, got %s"):format(type(opts)), 3) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      fail(fn, ("unknown option %q (valid: %s)"):format(tostring(k), table.concat(names, ", ")), 3)
    end
  end
  return opts
end

local function check_matrix(X, fn, what, argn)
  if not core.is_tensor(X) then
    fail(fn, ("%s (argument %d) must be an N x D float tensor, got %s"):format(what, argn, type(X)), 3)
  end
  if X:dim() ~= 2 then
    fail(fn, ("%s (argument %d) must be a 2-D tensor (N x D), got %d dims"):format(what, argn, X:dim()), 3)
  end
  return X
end

local function int_opt(opts, key, def, lo, fn)
  local v = opts[key]
  if v == nil then return def end
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    fail(fn, ("option %s must be an integer, got %s"):format(key, tostring(v)), 3)
  end
  v = math.tointeger(v)
  if lo and v < lo then fail(fn, ("option %s must be >= %d, got %d"):format(key, lo, v), 3) end
  return v
end

local function num_opt(opts, key, def, fn)
  local v = opts[key]
  if v == nil then return def end
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
    fail(fn, ("option %s must be a finite number, got %s"):format(key, tostring(v)), 3)
  end
  return v
end

-- runs a C function; its errors ("aviary.manifold.<fn>: ...") are raised again at the
-- caller of the public function (level 3: checked, the public function, its caller)
local function checked(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "string" and e:find("^aviary%.manifold%.") then error(e, 3) end
  error(e, 0) -- the progress callback's own error, as it was raised
end

local function to_array(t)
  local out = {}
  local n = t:numel()
  for i = 1, n do out[i] = t[i] end
  return out
end

-- PCA ------------------------------------------------------------------------
local PCA = {}
PCA.__index = PCA
PCA.__name = "aviary.manifold.PCA"
M.PCA = PCA

function PCA:__tostring()
  return ("PCA(n_components=%d, n_features=%d, n_samples=%d%s)"):format(self.n_components, self.n_features,
    self.n_samples, self.whiten and ", whiten" or "")
end

--- p:transform(X) -> N x k float32: (X - mean) components^T (divided by sqrt(explained_variance) when whitened)
function PCA:transform(X)
  if getmetatable(self) ~= PCA then error("aviary.manifold.PCA:transform: call it as p:transform(X)", 2) end
  check_matrix(X, "PCA:transform", "X", 1)
  local scale
  if self.whiten then
    scale = {}
    for j, v in ipairs(self.explained_variance) do scale[j] = math.sqrt(v) end
  end
  local Y = checked(pcall(C.pca_transform, X, self._components64, self._mean64, scale))
  return Y
end

--- manifold.pca(X, {n_components = min(N, D), whiten = false}) -> a PCA object (see the module's doc)
function M.pca(X, opts)
  opts = check_opts(opts, {n_components = true, whiten = true}, "pca")
  check_matrix(X, "pca", "X", 1)
  local n, d = X:size(1), X:size(2)
  local k = int_opt(opts, "n_components", math.min(n, d), 1, "pca")
  if opts.whiten ~= nil and type(opts.whiten) ~= "boolean" then
    fail("pca", "option whiten must be a boolean, got " .. type(opts.whiten))
  end
  local comps, mean, ev, sv, total = checked(pcall(C.pca_fit, X, k))
  local p = setmetatable({}, PCA)
  p.n_samples, p.n_features, p.n_components, p.whiten = n, d, k, opts.whiten == true
  p._components64, p._mean64 = comps, mean
  p.components = comps:float()
  p.mean = mean:float()
  p.explained_variance = to_array(ev)
  p.singular_values = to_array(sv)
  p.total_variance = total
  p.explained_variance_ratio = {}
  local explained = 0
  for j, v in ipairs(p.explained_variance) do
    p.explained_variance_ratio[j] = total > 0 and v / total or 0
    explained = explained + v
  end
  -- sklearn: the mean of the variances left out (0 when all components are kept)
  local rest = math.min(n, d) - k
  p.noise_variance = rest > 0 and math.max(total - explained, 0) / rest or 0
  p.embedding = checked(pcall(C.pca_transform, X, comps, mean, p.whiten and (function()
    local sc = {}
    for j, v in ipairs(p.explained_variance) do sc[j] = math.sqrt(v) end
    return sc
  end)() or nil))
  return p
end

-- t-SNE ----------------------------------------------------------------------
local TSNE_OPTS = {n_components = true, perplexity = true, early_exaggeration = true, learning_rate = true,
  n_iter = true, n_iter_without_progress = true, min_grad_norm = true, init = true, method = true, angle = true,
  seed = true, verbose = true, progress = true}

--- manifold.tsne(X, opts) -> Y (N x n_components float32), info
-- opts (sklearn's TSNE defaults): n_components = 2, perplexity = 30, early_exaggeration = 12,
-- learning_rate = "auto" (max(N / early_exaggeration / 4, 50)) or a number, n_iter = 1000,
-- n_iter_without_progress = 300, min_grad_norm = 1e-7, init = "pca" | "random" | N x n_components tensor,
-- method = "barnes_hut" | "exact", angle = 0.5, seed = 0, verbose = false,
-- progress = function(iter, kl) called every 50 iterations.
-- info = {kl_divergence, n_iter (iterations run), learning_rate, seconds, seconds_affinities}
function M.tsne(X, opts)
  opts = check_opts(opts, TSNE_OPTS, "tsne")
  check_matrix(X, "tsne", "X", 1)
  local n = X:size(1)
  if n < 2 then fail("tsne", ("X needs at least 2 samples (rows), got %d"):format(n)) end
  local o = {}
  o.n_components = int_opt(opts, "n_components", 2, 1, "tsne")
  o.perplexity = num_opt(opts, "perplexity", 30, "tsne")
  if o.perplexity <= 0 then fail("tsne", ("perplexity must be positive, got %g"):format(o.perplexity)) end
  if o.perplexity >= n then
    fail("tsne", ("perplexity (%g) must be less than the number of samples N (%d)"):format(o.perplexity, n))
  end
  o.early_exaggeration = num_opt(opts, "early_exaggeration", 12, "tsne")
  if o.early_exaggeration < 1 then
    fail("tsne", ("early_exaggeration must be >= 1, got %g"):format(o.early_exaggeration))
  end
  local lr = opts.learning_rate
  if lr == nil or lr == "auto" then o.learning_rate = nil
  elseif type(lr) == "number" and lr > 0 and lr < math.huge then o.learning_rate = lr
  else fail("tsne", ("learning_rate must be 'auto' or a positive number, got %s"):format(tostring(lr))) end
  o.n_iter = int_opt(opts, "n_iter", 1000, 1, "tsne")
  o.n_iter_without_progress = int_opt(opts, "n_iter_without_progress", 300, -1, "tsne")
  o.min_grad_norm = num_opt(opts, "min_grad_norm", 1e-7, "tsne")
  if o.min_grad_norm < 0 then fail("tsne", "min_grad_norm must be >= 0") end
  o.angle = num_opt(opts, "angle", 0.5, "tsne")
  if o.angle < 0 or o.angle > 1 then fail("tsne", ("angle must be in [0, 1], got %g"):format(o.angle)) end
  o.seed = int_opt(opts, "seed", 0, nil, "tsne")
  local method = opts.method or "barnes_hut"
  if method ~= "barnes_hut" and method ~= "exact" then
    fail("tsne", ("method must be 'barnes_hut' or 'exact', got %s"):format(tostring(method)))
  end
  o.method = method
  if method == "barnes_hut" and o.n_components > 3 then
    fail("tsne", ("n_components must be at most 3 for method 'barnes_hut' (a quad/oct-tree), got %d; use method = 'exact'")
      :format(o.n_components))
  end
  local init = opts.init or "pca"
  if core.is_tensor(init) then
    if init:dim() ~= 2 or init:size(1) ~= n or init:size(2) ~= o.n_components then
      fail("tsne", ("init must be an %d x %d tensor (N x n_components), got %s"):format(n, o.n_components,
        table.concat(init:size(), "x")))
    end
  elseif init ~= "pca" and init ~= "random" then
    fail("tsne", ("init must be 'pca', 'random' or an N x n_components tensor, got %s"):format(tostring(init)))
  end
  o.init = init
  if opts.verbose ~= nil and type(opts.verbose) ~= "boolean" then fail("tsne", "option verbose must be a boolean") end
  o.verbose = opts.verbose
  if opts.progress ~= nil and type(opts.progress) ~= "function" then
    fail("tsne", "option progress must be a function(iter, kl), got " .. type(opts.progress))
  end
  o.progress = opts.progress
  local Y, info = checked(pcall(C.tsne, X, o))
  return Y, info
end

--- manifold.trustworthiness(X, Y, {n_neighbors = 5}) -> number in [0, 1]
-- sklearn.manifold.trustworthiness with the euclidean metric: 1 - 2 / (n k (2n - 3k - 1))
-- sum over the k nearest neighbours j of i in Y of max(0, rank of j among i's neighbours in X - k).
function M.trustworthiness(X, Y, opts)
  if type(opts) == "number" then opts = {n_neighbors = opts} end
  opts = check_opts(opts, {n_neighbors = true}, "trustworthiness")
  check_matrix(X, "trustworthiness", "X", 1)
  check_matrix(Y, "trustworthiness", "Y", 2)
  local k = int_opt(opts, "n_neighbors", 5, 1, "trustworthiness")
  local tw = checked(pcall(C.trustworthiness, X, Y, k))
  return tw
end

--- manifold._joint_probabilities(X, perplexity [, k]) -> neighbors (N x k int64, 1-based), sqdist (N x k f64),
-- P (N x k f64): the nearest neighbours (sorted by distance) and the conditional probabilities of
-- sklearn's _binary_search_perplexity over them (the rows of _joint_probabilities_nn before symmetrising)
function M._joint_probabilities(X, perplexity, k)
  check_matrix(X, "_joint_probabilities", "X", 1)
  local nb, sq, P = checked(pcall(C.conditional_p, X, perplexity, k))
  return nb, sq, P
end

return M
