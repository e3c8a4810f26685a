--- aviary.nn's layers, containers and criteria, as torch.nn's: Linear, Conv2d,
-- BatchNorm1d/2d, the activations, pooling, Dropout, Flatten, Identity,
-- Sequential, ModuleList, ModuleDict and the losses. aviary.nn loads this file
-- and calls it with itself; use the classes as nn.Conv2d, nn.Sequential, ...
local av = require "aviary"
local F = require "aviary.nn.functional"

return function(nn, helpers)
  local Module, is_module = nn.Module, nn.is_module
  local options, pyrepr, pair = helpers.options, helpers.pyrepr, helpers.pair
  ------------------------------------------------------------------------------
  -- initialisation shared by Conv2d and Linear (PyTorch's reset_parameters:
  -- kaiming_uniform_ with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
  -- and the bias from the same bound)
  local function default_init(w, b, fan_in)
    av.no_grad(function()
      local bound = fan_in > 0 and 1 / math.sqrt(fan_in) or 0
      w:uniform_(-bound, bound)
      if b then b:uniform_(-bound, bound) end
    end)
  end

  local function positive_int(who, name, v)
    if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) or v < 1 then
      error(("%s: %s must be a positive integer, got %s"):format(who, name, tostring(v)), 4)
    end
    return math.tointeger(v)
  end

  ------------------------------------------------------------------------------
  -- layers

  local Identity = Module:extend("Identity")
  nn.Identity = Identity
  function Identity:__init() end
  function Identity:forward(x) return x end

  local Linear = Module:extend("Linear")
  nn.Linear = Linear
  --- nn.Linear(in_features, out_features, {bias=true, dtype='float32'})
  function Linear:__init(in_f, out_f, opts)
    local who = "nn.Linear"
    self.in_features = positive_int(who, "in_features", in_f)
    self.out_features = positive_int(who, "out_features", out_f)
    local o = options(who, opts, {bias = true, dtype = "float32"}, 3)
    self.weight = nn.Parameter(av.empty(out_f, in_f, {dtype = o.dtype}))
    self.bias = o.bias and nn.Parameter(av.empty(out_f, {dtype = o.dtype})) or nil
    self:reset_parameters()
  end
  function Linear:reset_parameters() default_init(self.weight, self.bias, self.in_features) end
  function Linear:forward(x) return F.linear(x, self.weight, self.bias) end
  function Linear:extra_repr()
    return ("in_features=%d, out_features=%d, bias=%s"):format(self.in_features, self.out_features, pyrepr(self.bias ~= nil))
  end

  local Conv2d = Module:extend("Conv2d")
  nn.Conv2d = Conv2d
  --- nn.Conv2d(in, out, kernel_size, {stride=1, padding=0, dilation=1, groups=1, bias=true, dtype='float32'})
  function Conv2d:__init(cin, cout, k, opts)
    local who = "nn.Conv2d"
    self.in_channels = positive_int(who, "in_channels", cin)
    self.out_channels = positive_int(who, "out_channels", cout)
    self.kernel_size = pair(who, "kernel_size", k)
    local o = options(who, opts, {stride = 1, padding = 0, dilation = 1, groups = 1, bias = true,
                                  dtype = "float32", padding_mode = "zeros"}, 3)
    if o.padding_mode ~= "zeros" then
      error(("%s: padding_mode '%s' is not supported (only 'zeros'); pad with F.pad first"):format(who, tostring(o.padding_mode)), 3)
    end
    self.stride = pair(who, "stride", o.stride)
    self.padding = pair(who, "padding", o.padding)
    self.dilation = pair(who, "dilation", o.dilation)
    self.groups = positive_int(who, "groups", o.groups)
    if cin % self.groups ~= 0 or cout % self.groups ~= 0 then
      error(("%s: in_channels (%d) and out_channels (%d) must be divisible by groups (%d)"):format(who, cin, cout, self.groups), 3)
    end
    self.weight = nn.Parameter(av.empty(cout, cin // self.groups, self.kernel_size[1], self.kernel_size[2], {dtype = o.dtype}))
    self.bias = o.bias and nn.Parameter(av.empty(cout, {dtype = o.dtype})) or nil
    self._opts = {stride = self.stride, padding = self.padding, dilation = self.dilation, groups = self.groups}
    self:reset_parameters()
  end
  function Conv2d:reset_parameters()
    default_init(self.weight, self.bias, (self.in_channels // self.groups) * self.kernel_size[1] * self.kernel_size[2])
  end
  function Conv2d:forward(x) return F.conv2d(x, self.weight, self.bias, self._opts) end
  function Conv2d:extra_repr()
    local s = ("%d, %d, kernel_size=%s, stride=%s"):format(self.in_channels, self.out_channels, pyrepr(self.kernel_size), pyrepr(self.stride))
    local p = self.padding
    if type(p) == "string" or p[1] ~= 0 or p[2] ~= 0 then s = s .. ", padding=" .. pyrepr(p) end
    if self.dilation[1] ~= 1 or self.dilation[2] ~= 1 then s = s .. ", dilation=" .. pyrepr(self.dilation) end
    if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
    if self.bias == nil then s = s .. ", bias=False" end
    return s
  end

  local function make_bn(name, dims)
    local BN = Module:extend(name)
    --- nn.BatchNorm2d(num_features, {eps=1e-5, momentum=0.1, affine=true, track_running_stats=true})
    function BN:__init(c, opts)
      local who = "nn." .. name
      self.num_features = positive_int(who, "num_features", c)
      local o = options(who, opts, {eps = 1e-5, momentum = 0.1, affine = true, track_running_stats = true,
                                    dtype = "float32"}, 3)
      self.eps, self.affine, self.track_running_stats = o.eps, o.affine, o.track_running_stats
      -- momentum = false means PyTorch's momentum=None: a cumulative moving average
      self.momentum = o.momentum
      if o.affine then
        self.weight = nn.Parameter(av.ones(c, {dtype = o.dtype}))
        self.bias = nn.Parameter(av.zeros(c, {dtype = o.dtype}))
      end
      if o.track_running_stats then
        self:register_buffer("running_mean", av.zeros(c, {dtype = o.dtype}))
        self:register_buffer("running_var", av.ones(c, {dtype = o.dtype}))
        self:register_buffer("num_batches_tracked", av.tensor(0, {dtype = "int64"}))
      end
    end
    function BN:reset_running_stats()
      if self.track_running_stats then
        self.running_mean:zero_(); self.running_var:fill_(1); self.num_batches_tracked:zero_()
      end
    end
    function BN:reset_parameters()
      self:reset_running_stats()
      if self.affine then av.no_grad(function() self.weight:fill_(1); self.bias:zero_() end) end
    end
    function BN:forward(x)
      local d = x:dim()
      if d ~= dims and d ~= dims - 1 and not (dims == 3 and d == 2) then
        error(("%s: expected a %dd input (N, C, ...), got %dd %s"):format(name, dims, d, table.concat(x:size(), "x")), 3)
      end
      local training = self.training or not self.track_running_stats
      local momentum = self.momentum or 0.0
      if self.training and self.track_running_stats then
        self.num_batches_tracked:add_(1)
        if not self.momentum then momentum = 1.0 / self.num_batches_tracked:item() end
      end
      local rm, rv
      if not self.training or self.track_running_stats then rm, rv = self.running_mean, self.running_var end
      return F.batch_norm(x, rm, rv, self.weight, self.bias, {training = training, momentum = momentum, eps = self.eps})
    end
    function BN:extra_repr()
      return ("%d, eps=%s, momentum=%s, affine=%s, track_running_stats=%s"):format(self.num_features, pyrepr(self.eps),
        self.momentum and pyrepr(self.momentum) or "None", pyrepr(self.affine), pyrepr(self.track_running_stats))
    end
    return BN
  end
  nn.BatchNorm2d = make_bn("BatchNorm2d", 4)
  nn.BatchNorm1d = make_bn("BatchNorm1d", 3)

  -- activations: name, functional, options (defaults), how the options reach F, repr
  local function activation(name, fn, defaults, call, repr)
    local A = Module:extend(name)
    function A:__init(opts)
      local o = options("nn." .. name, opts, defaults or {}, 3)
      for k, v in pairs(o) do self[k] = v end
    end
    if call then
      function A:forward(x) return call(self, x) end
    else
      function A:forward(x) return fn(x) end
    end
    function A:extra_repr()
      if repr then return repr(self) end
      if defaults and defaults.inplace ~= nil then return self.inplace and "inplace=True" or "" end
      return ""
    end
    nn[name] = A
    return A
  end
  -- {inplace=true}: in place on the input when no autograd graph runs through
  -- it (evaluation, no_grad), saving the memory torch's inplace=True saves;
  -- out of place while recording, so gradients stay right
  local is_grad_enabled = av.is_grad_enabled
  activation("ReLU", F.relu, {inplace = false}, function(self, x)
    if self.inplace and not (x.requires_grad and is_grad_enabled()) then return x:relu_() end
    return F.relu(x)
  end)
  activation("ReLU6", F.relu6, {inplace = false}, function(self, x)
    if self.inplace and not (x.requires_grad and is_grad_enabled()) then return x:clamp_(0, 6) end
    return F.relu6(x)
  end)
  activation("Sigmoid", F.sigmoid)
  activation("Tanh", F.tanh)
  activation("SiLU", F.silu, {inplace = false})
  activation("Hardswish", F.hardswish, {inplace = false})
  activation("Hardsigmoid", F.hardsigmoid, {inplace = false})
  activation("GELU", F.gelu, {approximate = "none"}, function(self, x) return F.gelu(x, {approximate = self.approximate}) end,
    function(self) return "approximate='" .. self.approximate .. "'" end)
  activation("LeakyReLU", F.leaky_relu, {negative_slope = 0.01, inplace = false},
    function(self, x) return F.leaky_relu(x, {negative_slope = self.negative_slope}) end,
    function(self) return "negative_slope=" .. pyrepr(self.negative_slope) .. (self.inplace and ", inplace=True" or "") end)
  activation("ELU", F.elu, {alpha = 1.0, inplace = false},
    function(self, x) return F.elu(x, {alpha = self.alpha}) end,
    function(self) return "alpha=" .. pyrepr(self.alpha) .. (self.inplace and ", inplace=True" or "") end)
  activation("Softplus", F.softplus, {beta = 1, threshold = 20},
    function(self, x) return F.softplus(x, {beta = self.beta, threshold = self.threshold}) end,
    function(self) return "beta=" .. pyrepr(self.beta) .. ", threshold=" .. pyrepr(self.threshold) end)

  local function dim_module(name, fn)
    local A = Module:extend(name)
    --- nn.Softmax(dim) / nn.LogSoftmax(dim): dim is 1-based
    function A:__init(dim)
      if math.type(dim) ~= "integer" then error(("nn.%s: dim must be an integer (1-based), got %s"):format(name, tostring(dim)), 3) end
      self.dim = dim
    end
    function A:forward(x) return fn(x, self.dim) end
    function A:extra_repr() return "dim=" .. self.dim end
    nn[name] = A
  end
  dim_module("Softmax", F.softmax)
  dim_module("LogSoftmax", F.log_softmax)

  local MaxPool2d = Module:extend("MaxPool2d")
  nn.MaxPool2d = MaxPool2d
  --- nn.MaxPool2d(kernel_size, {stride=kernel_size, padding=0, dilation=1, ceil_mode=false})
  function MaxPool2d:__init(k, opts)
    local o = options("nn.MaxPool2d", opts, {stride = nn.NONE, padding = 0, dilation = 1, ceil_mode = false,
                                             return_indices = false}, 3)
    self.kernel_size, self.stride, self.padding, self.dilation = k, o.stride or k, o.padding, o.dilation
    self.ceil_mode, self.return_indices = o.ceil_mode, o.return_indices
    self._opts = {stride = self.stride, padding = self.padding, dilation = self.dilation, ceil_mode = self.ceil_mode,
                  return_indices = self.return_indices}
  end
  function MaxPool2d:forward(x) return F.max_pool2d(x, self.kernel_size, self._opts) end
  function MaxPool2d:extra_repr()
    return ("kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s"):format(pyrepr(self.kernel_size),
      pyrepr(self.stride), pyrepr(self.padding), pyrepr(self.dilation), pyrepr(self.ceil_mode))
  end

  local AvgPool2d = Module:extend("AvgPool2d")
  nn.AvgPool2d = AvgPool2d
  --- nn.AvgPool2d(kernel_size, {stride=kernel_size, padding=0, ceil_mode=false, count_include_pad=true})
  function AvgPool2d:__init(k, opts)
    local o = options("nn.AvgPool2d", opts, {stride = nn.NONE, padding = 0, ceil_mode = false, count_include_pad = true,
                                             divisor_override = nn.NONE}, 3)
    self.kernel_size, self.stride, self.padding = k, o.stride or k, o.padding
    self.ceil_mode, self.count_include_pad, self.divisor_override = o.ceil_mode, o.count_include_pad, o.divisor_override
    self._opts = {stride = self.stride, padding = self.padding, ceil_mode = self.ceil_mode,
                  count_include_pad = self.count_include_pad, divisor_override = self.divisor_override}
  end
  function AvgPool2d:forward(x) return F.avg_pool2d(x, self.kernel_size, self._opts) end
  function AvgPool2d:extra_repr()
    return ("kernel_size=%s, stride=%s, padding=%s"):format(pyrepr(self.kernel_size), pyrepr(self.stride), pyrepr(self.padding))
  end

  local function adaptive(name, fn)
    local A = Module:extend(name)
    function A:__init(size) self.output_size = size end
    function A:forward(x) return fn(x, self.output_size) end
    function A:extra_repr()
      local s = self.output_size
      if type(s) == "number" then s = {s, s} end
      return "output_size=" .. pyrepr(s)
    end
    nn[name] = A
  end
  adaptive("AdaptiveAvgPool2d", F.adaptive_avg_pool2d)
  adaptive("AdaptiveMaxPool2d", F.adaptive_max_pool2d)

  local Dropout = Module:extend("Dropout")
  nn.Dropout = Dropout
  --- nn.Dropout(p=0.5, {inplace=false}); active only in training mode
  function Dropout:__init(p, opts)
    if type(p) == "table" then opts, p = p, p.p end
    p = p == nil and 0.5 or p
    if type(p) ~= "number" or p < 0 or p > 1 then
      error(("nn.Dropout: p must be a probability in [0, 1], got %s"):format(tostring(p)), 3)
    end
    local o = options("nn.Dropout", opts, {p = 0.5, inplace = false}, 3)
    self.p, self.inplace = p, o.inplace
  end
  function Dropout:forward(x)
    if not self.training or self.p == 0 then return x end
    return F.dropout(x, {p = self.p, training = true})
  end
  function Dropout:extra_repr() return ("p=%s, inplace=%s"):format(pyrepr(self.p), pyrepr(self.inplace)) end

  local Flatten = Module:extend("Flatten")
  nn.Flatten = Flatten
  --- nn.Flatten(start_dim=2, end_dim=-1): 1-based dims; the default keeps the batch dim
  function Flatten:__init(s, e) self.start_dim, self.end_dim = s or 2, e or -1 end
  function Flatten:forward(x) return x:flatten(self.start_dim, self.end_dim) end
  function Flatten:extra_repr()
    -- shown in PyTorch's 0-based terms so printed models compare line for line
    local s = self.start_dim > 0 and self.start_dim - 1 or self.start_dim
    local e = self.end_dim > 0 and self.end_dim - 1 or self.end_dim
    return ("start_dim=%d, end_dim=%d"):format(s, e)
  end

  ------------------------------------------------------------------------------
  -- containers

  local Sequential = Module:extend("Sequential")
  nn.Sequential = Sequential
  --- nn.Sequential(m1, m2, ...) or nn.Sequential({name = m, ...} as an ordered list of {name, m})
  function Sequential:__init(...)
    local n = select("#", ...)
    for i = 1, n do
      local m = select(i, ...)
      if not is_module(m) then
        error(("nn.Sequential: argument %d must be a module, got %s"):format(i, type(m)), 3)
      end
      self:add_module(tostring(i - 1), m)
    end
  end
  --- seq:add(m [, name]) -> seq; appends a module (Torch7's add, PyTorch's append)
  function Sequential:add(m, name)
    if not is_module(m) then error("Sequential:add: expected a module, got " .. type(m), 2) end
    self:add_module(name or tostring(#self._modules.keys), m)
    return self
  end
  Sequential.append = Sequential.add
  function Sequential:forward(x, ...)
    local mods = self._modules
    for _, k in ipairs(mods.keys) do x = mods.map[k](x, ...) end
    return x
  end

  local ModuleList = Module:extend("ModuleList")
  nn.ModuleList = ModuleList
  --- nn.ModuleList({m1, m2, ...}); list[i] is 1-based, names are "0", "1", ...
  function ModuleList:__init(list)
    for i, m in ipairs(list or {}) do
      if not is_module(m) then error(("nn.ModuleList: element %d must be a module, got %s"):format(i, type(m)), 3) end
      self:add_module(tostring(i - 1), m)
    end
  end
  ModuleList.append = Sequential.add
  ModuleList.add = Sequential.add
  function ModuleList:forward()
    error("ModuleList has no forward: iterate over its modules (for i = 1, #list do ... list[i] ... end)", 2)
  end

  local ModuleDict = Module:extend("ModuleDict")
  nn.ModuleDict = ModuleDict
  --- nn.ModuleDict({{'name', m}, ...} or {name = m}) ; names keep insertion order (sorted for a plain table)
  function ModuleDict:__init(d)
    d = d or {}
    if #d > 0 then
      for i, e in ipairs(d) do
        if type(e) ~= "table" or type(e[1]) ~= "string" or not is_module(e[2]) then
          error(("nn.ModuleDict: entry %d must be {name, module}"):format(i), 3)
        end
        self:add_module(e[1], e[2])
      end
    else
      local keys = {}
      for k in pairs(d) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do
        if not is_module(d[k]) then error(("nn.ModuleDict: '%s' must be a module"):format(tostring(k)), 3) end
        self:add_module(k, d[k])
      end
    end
  end
  function ModuleDict:keys()
    local out = {}
    for i, k in ipairs(self._modules.keys) do out[i] = k end
    return out
  end
  function ModuleDict:forward()
    error("ModuleDict has no forward: index it by name (dict.name or dict:get('name'))", 2)
  end

  ------------------------------------------------------------------------------
  -- criteria

  local function criterion(name, fn, defaults)
    local C = Module:extend(name)
    function C:__init(opts)
      self.opts = options("nn." .. name, opts, defaults, 3)
      for k, v in pairs(self.opts) do self[k] = v end
    end
    function C:forward(input, target) return fn(input, target, self.opts) end
    function C:extra_repr() return "" end
    nn[name] = C
  end
  --- nn.CrossEntropyLoss({weight=, ignore_index=-100, reduction='mean', label_smoothing=0}); targets 1-based
  criterion("CrossEntropyLoss", F.cross_entropy, {weight = nn.NONE, ignore_index = -100, reduction = "mean", label_smoothing = 0.0})
  criterion("NLLLoss", F.nll_loss, {weight = nn.NONE, ignore_index = -100, reduction = "mean"})
  criterion("MSELoss", F.mse_loss, {reduction = "mean"})
  criterion("L1Loss", F.l1_loss, {reduction = "mean"})
  criterion("BCEWithLogitsLoss", F.binary_cross_entropy_with_logits, {weight = nn.NONE, pos_weight = nn.NONE, reduction = "mean"})
end
