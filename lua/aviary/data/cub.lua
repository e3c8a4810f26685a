--- aviary.data.cub: CUB-200-2011 (and NABirds) metadata, checked, and the study's folder layout.
--
--   local cub = require "aviary.data.cub"
--   local info = cub.read("data/CUB_200_2011")          -- the extracted archive's folder
--   info.images[i] = {id=, path= (relative to images/), class_id= (1-based, contiguous),
--                     class_name=, is_train=, bbox={x=, y=, w=, h=}}
--   info.classes[k] = {id=k, name=, original_id=, dir=, train=, test=}
--   info.counts = {train=, test=}
--
--   cub.prepare("CUB_200_2011.tgz" or "data/CUB_200_2011", "data/images",
--               {mode = "link" | "copy" | "index", crop = "bbox" | nil})
--
-- The official files (one record per line, space-separated):
--   images.txt              <image id> <path under images/>
--   image_class_labels.txt  <image id> <class id>
--   train_test_split.txt    <image id> <1 = training image, 0 = test image>
--   classes.txt             <class id> <class name>
--   bounding_boxes.txt      <image id> <x> <y> <width> <height>   (pixels, floats, 0-based from top-left)
-- NABirds has the same files (image ids are UUIDs, class names contain spaces,
-- class ids are not contiguous, only the leaf classes have images) plus
-- hierarchy.txt (<child class id> <parent class id>). Classes that have images
-- are numbered 1..K in the order of their original ids; original_id keeps the
-- file's id. Every error names the file and the line.
local M = {}

local REQUIRED = {"images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt", "bounding_boxes.txt"}
M.files = REQUIRED

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function fail(fn, fmt, ...)
  error(("aviary.data.cub.%s: " .. fmt):format(fn, ...), 0)
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function is_dir(path)
  return os.execute("test -d " .. sh(path)) == true
end

-- reads a metadata file into a list of {lineno, fields...}; blank lines are skipped
local function read_records(fn, root, name, nfields, rest)
  local path = root .. "/" .. name
  local f = io.open(path, "r")
  if not f then fail(fn, "%s is missing in %s (is it the CUB_200_2011 folder of the extracted archive?)", name, root) end
  local recs, lineno = {}, 0
  for line in f:lines() do
    lineno = lineno + 1
    line = line:gsub("\r$", "")
    if line:find("%S") then
      local fields = {}
      if rest then
        -- the first field, then the rest of the line (names may contain spaces)
        local a, b = line:match("^%s*(%S+)%s+(.-)%s*$")
        if not a or b == "" then
          f:close()
          fail(fn, "%s line %d: expected '<id> <name>', got %q", name, lineno, line)
        end
        fields = {a, b}
      else
        for w in line:gmatch("%S+") do fields[#fields + 1] = w end
        if #fields ~= nfields then
          f:close()
          fail(fn, "%s line %d: expected %d fields, got %d (%q)", name, lineno, nfields, #fields, line)
        end
      end
      fields.line = lineno
      recs[#recs + 1] = fields
    end
  end
  f:close()
  return recs
end

local function sanitize(name)
  return (name:gsub("[^%w%-]+", "_"):gsub("^_+", ""):gsub("_+$", ""))
end

--- reads and checks the metadata of an extracted CUB-200-2011 (or NABirds) folder.
-- opts: format = "cub" | "nabirds" (default: nabirds when hierarchy.txt exists),
-- check_images = true (every listed image file must exist; false skips the
-- 11,788 file checks for speed).
function M.read(root, opts)
  local fn = "read"
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "format" and k ~= "check_images" then
      fail(fn, "unknown option %q (valid: check_images, format)", tostring(k))
    end
  end
  if type(root) ~= "string" then fail(fn, "expected the dataset folder (a string), got %s", type(root)) end
  root = root:gsub("/+$", "")
  if not is_dir(root) then fail(fn, "%s is not a folder", root) end
  local format = opts.format
  if format == nil then format = exists(root .. "/hierarchy.txt") and "nabirds" or "cub" end
  if format ~= "cub" and format ~= "nabirds" then fail(fn, "format must be 'cub' or 'nabirds', got %q", tostring(format)) end
  for _, name in ipairs(REQUIRED) do
    if not exists(root .. "/" .. name) then
      fail(fn, "%s is missing in %s (is it the CUB_200_2011 folder of the extracted archive?)", name, root)
    end
  end
  if format == "nabirds" and not exists(root .. "/hierarchy.txt") then
    fail(fn, "hierarchy.txt is missing in %s (format 'nabirds')", root)
  end

  local images_r = read_records(fn, root, "images.txt", 2)
  local labels_r = read_records(fn, root, "image_class_labels.txt", 2)
  local split_r = read_records(fn, root, "train_test_split.txt", 2)
  local classes_r = read_records(fn, root, "classes.txt", 2, true)
  local boxes_r = read_records(fn, root, "bounding_boxes.txt", 5)
  local n = #images_r
  if n == 0 then fail(fn, "images.txt lists no images") end
  for _, p in ipairs({{"image_class_labels.txt", labels_r}, {"train_test_split.txt", split_r},
                      {"bounding_boxes.txt", boxes_r}}) do
    if #p[2] ~= n then fail(fn, "%s has %d lines but images.txt has %d", p[1], #p[2], n) end
  end

  -- classes
  local class_by_orig, class_list = {}, {}
  for _, r in ipairs(classes_r) do
    local id = math.tointeger(tonumber(r[1]))
    if not id then fail(fn, "classes.txt line %d: class id %q is not an integer", r.line, r[1]) end
    if class_by_orig[id] then fail(fn, "classes.txt line %d: duplicate class id %d", r.line, id) end
    local c = {original_id = id, name = r[2], line = r.line}
    class_by_orig[id] = c
    class_list[#class_list + 1] = c
  end
  if format == "cub" then
    table.sort(class_list, function(a, b) return a.original_id < b.original_id end)
    for k, c in ipairs(class_list) do
      if c.original_id ~= k then
        fail(fn, "classes.txt line %d: class ids must be 1..%d in order, found %d where %d was expected "
          .. "(NABirds-style ids: pass {format = 'nabirds'})", c.line, #class_list, c.original_id, k)
      end
    end
  end

  -- images
  local by_id, images = {}, {}
  for k, r in ipairs(images_r) do
    local id = format == "cub" and math.tointeger(tonumber(r[1])) or r[1]
    if not id then fail(fn, "images.txt line %d: image id %q is not an integer", r.line, r[1]) end
    if by_id[id] then fail(fn, "images.txt line %d: duplicate image id %s", r.line, tostring(id)) end
    local path = r[2]
    if path:find("^/") or path:find("%.%.") then fail(fn, "images.txt line %d: path %q must be relative to images/", r.line, path) end
    local im = {id = id, path = path, line = r.line}
    by_id[id] = im
    images[k] = im
  end
  local function lookup(name, r)
    local id = format == "cub" and math.tointeger(tonumber(r[1])) or r[1]
    local im = id and by_id[id]
    if not im then fail(fn, "%s line %d: unknown image id %s", name, r.line, r[1]) end
    return im
  end
  local seen = {}
  local function once(name, r, im)
    seen[name] = seen[name] or {}
    if seen[name][im] then fail(fn, "%s line %d: image id %s appears twice", name, r.line, r[1]) end
    seen[name][im] = true
  end
  for _, r in ipairs(labels_r) do
    local im = lookup("image_class_labels.txt", r)
    once("image_class_labels.txt", r, im)
    local cid = math.tointeger(tonumber(r[2]))
    local c = cid and class_by_orig[cid]
    if not c then
      fail(fn, "image_class_labels.txt line %d: unknown class id %s (not in classes.txt)", r.line, r[2])
    end
    im.class = c
    c.used = true
  end
  for _, r in ipairs(split_r) do
    local im = lookup("train_test_split.txt", r)
    once("train_test_split.txt", r, im)
    if r[2] ~= "1" and r[2] ~= "0" then
      fail(fn, "train_test_split.txt line %d: the flag must be 1 (train) or 0 (test), got %q", r.line, r[2])
    end
    im.is_train = r[2] == "1"
  end
  for _, r in ipairs(boxes_r) do
    local im = lookup("bounding_boxes.txt", r)
    once("bounding_boxes.txt", r, im)
    local v = {}
    for q = 2, 5 do
      v[q - 1] = tonumber(r[q])
      if not v[q - 1] then fail(fn, "bounding_boxes.txt line %d: %q is not a number", r.line, r[q]) end
    end
    if v[3] < 0 or v[4] < 0 then
      fail(fn, "bounding_boxes.txt line %d: negative box size %gx%g", r.line, v[3], v[4])
    end
    im.bbox = {x = v[1], y = v[2], w = v[3], h = v[4]}
  end

  -- contiguous class ids: every class (CUB), or the classes that have images (NABirds)
  local classes = {}
  for _, c in ipairs(class_list) do
    if format == "cub" or c.used then classes[#classes + 1] = c end
  end
  table.sort(classes, function(a, b) return a.original_id < b.original_id end)
  for k, c in ipairs(classes) do
    c.id = k
    c.dir = format == "cub" and c.name or ("%04d.%s"):format(c.original_id, sanitize(c.name))
    c.train, c.test = 0, 0
    c.used, c.line = nil, nil
  end
  if format == "nabirds" then
    local parents = read_records(fn, root, "hierarchy.txt", 2)
    for _, r in ipairs(parents) do
      local child, parent = math.tointeger(tonumber(r[1])), math.tointeger(tonumber(r[2]))
      if not child or not class_by_orig[child] then fail(fn, "hierarchy.txt line %d: unknown class id %s", r.line, r[1]) end
      if not parent or not class_by_orig[parent] then fail(fn, "hierarchy.txt line %d: unknown class id %s", r.line, r[2]) end
      class_by_orig[child].parent_id = parent
    end
  end

  local check = opts.check_images ~= false
  local counts = {train = 0, test = 0}
  for _, im in ipairs(images) do
    local c = im.class
    im.class_id, im.class_name, im.class = c.id, c.name, nil
    if im.is_train then counts.train = counts.train + 1; c.train = c.train + 1
    else counts.test = counts.test + 1; c.test = c.test + 1 end
    if check and not exists(root .. "/images/" .. im.path) then
      fail(fn, "images.txt line %d: image file images/%s does not exist in %s", im.line, im.path, root)
    end
    im.line = nil
  end
  return {root = root, format = format, images = images, classes = classes, counts = counts}
end

-- finds the dataset folder (the one holding images.txt) at most 3 levels under dir
local function find_root(dir)
  local p = io.popen("find " .. sh(dir) .. " -maxdepth 3 -name images.txt 2>/dev/null | sort | head -n 1")
  local line = p:read("l")
  p:close()
  return line and line:match("^(.*)/images%.txt$")
end

local function abspath(path)
  local p = io.popen("cd " .. sh(path) .. " 2>/dev/null && pwd")
  local out = p:read("l")
  p:close()
  return out
end

local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

local function basename(p) return p:match("([^/]+)$") end

--- prepares the study's layout from the archive or the extracted folder.
-- src: CUB_200_2011.tgz (extracted into a temporary folder beside dst, removed
-- afterwards) or the extracted CUB_200_2011 folder. Writes
--   dst/train/<class dir>/<file>.jpg and dst/test/<class dir>/<file>.jpg
-- (hard links where possible, else copies: mode "link"; always copies: "copy";
-- crop = "bbox" writes each image cropped to its bounding box, needs aviary.image),
--   dst/train.txt, dst/test.txt   "<path> <class id>" per image (paths relative to dst;
--                                  mode "index" writes only these, pointing at the source)
--   dst/classes.json              names, ids, per-split counts, source, mode.
-- opts: mode ("link"), crop (nil), format, check_images (true), progress (true).
-- Returns {train=, test=, classes=, mode= (what was done: a failed link falls back to copy), dst=}.
function M.prepare(src, dst, opts)
  local fn = "prepare"
  opts = opts or {}
  local valid = {mode = true, crop = true, format = true, check_images = true, progress = true}
  for k in pairs(opts) do
    if not valid[k] then fail(fn, "unknown option %q (valid: check_images, crop, format, mode, progress)", tostring(k)) end
  end
  local mode = opts.mode or "link"
  if mode ~= "link" and mode ~= "copy" and mode ~= "index" then
    fail(fn, "mode must be 'link', 'copy' or 'index', got %q", tostring(mode))
  end
  if opts.crop ~= nil and opts.crop ~= "bbox" then fail(fn, "crop must be 'bbox' or nil, got %q", tostring(opts.crop)) end
  if opts.crop and mode == "index" then fail(fn, "crop = 'bbox' writes images; it cannot be used with mode 'index'") end
  if type(src) ~= "string" or type(dst) ~= "string" then fail(fn, "expected src and dst paths (strings)") end
  src, dst = src:gsub("/+$", ""), dst:gsub("/+$", "")
  if not os.execute("mkdir -p " .. sh(dst)) then fail(fn, "cannot create %s", dst) end
  local tmpdir, root
  if not is_dir(src) then
    if not exists(src) then fail(fn, "%s does not exist", src) end
    if mode == "index" then
      -- the index must point at files that stay: extract into dst
      tmpdir = nil
      if not os.execute(("tar xzf %s -C %s"):format(sh(src), sh(dst))) then fail(fn, "tar xzf %s failed", src) end
      root = find_root(dst)
    else
      local parent = dst:match("^(.*)/[^/]+$") or "."
      tmpdir = ("%s/.cub_extract_%d_%d"):format(parent, os.time(), math.random(1, 1e9))
      if not os.execute("mkdir -p " .. sh(tmpdir)) then fail(fn, "cannot create %s", tmpdir) end
      if not os.execute(("tar xzf %s -C %s"):format(sh(src), sh(tmpdir))) then
        os.execute("rm -rf " .. sh(tmpdir))
        fail(fn, "tar xzf %s failed (is it the CUB_200_2011.tgz archive?)", src)
      end
      root = find_root(tmpdir)
    end
    if not root then
      if tmpdir then os.execute("rm -rf " .. sh(tmpdir)) end
      fail(fn, "%s holds no images.txt (is it the CUB_200_2011.tgz archive?)", src)
    end
  else
    root = src
  end
  local ok, res = pcall(function()
    local info = M.read(root, {format = opts.format, check_images = opts.check_images})
    local dst_abs = abspath(dst)
    local root_abs = abspath(root)
    local lists = {train = {}, test = {}}
    local used_mode = opts.crop and "crop" or mode
    local total = #info.images
    local bar = opts.progress ~= false and total > 0 and require("aviary.progress").bar(total, {label = "preparing", unit = "img"})
    if mode == "index" then
      -- paths relative to dst when the source lies under it, else absolute
      local prefix = root_abs
      if root_abs:sub(1, #dst_abs + 1) == dst_abs .. "/" then prefix = root_abs:sub(#dst_abs + 2) end
      for _, im in ipairs(info.images) do
        local l = lists[im.is_train and "train" or "test"]
        l[#l + 1] = ("%s/images/%s %d"):format(prefix, im.path, im.class_id)
      end
      if bar then bar:update(nil, total) end
    else
      -- group files per (split, class) so one cp handles a whole folder
      local groups, order = {}, {}
      for _, im in ipairs(info.images) do
        local split = im.is_train and "train" or "test"
        local c = info.classes[im.class_id]
        local key = split .. "/" .. c.dir
        if not groups[key] then groups[key] = {}; order[#order + 1] = key end
        local g = groups[key]
        g[#g + 1] = im
        local l = lists[split]
        l[#l + 1] = ("%s/%s %d"):format(key, basename(im.path), im.class_id)
      end
      local mk = {}
      for _, key in ipairs(order) do mk[#mk + 1] = sh(dst .. "/" .. key) end
      for q = 1, #mk, 200 do
        local chunk = table.concat(mk, " ", q, math.min(#mk, q + 199))
        if not os.execute("mkdir -p " .. chunk) then fail(fn, "cannot create the class folders under %s", dst) end
      end
      local image_mod = opts.crop and require("aviary.image")
      local done = 0
      for _, key in ipairs(order) do
        local g = groups[key]
        local outdir = dst .. "/" .. key
        if opts.crop then
          for _, im in ipairs(g) do
            local img = image_mod.load(root .. "/images/" .. im.path, {channels = 0})
            local b = im.bbox
            local H, W = img:size(-2), img:size(-1)
            local x0, y0 = math.max(0, math.floor(b.x)), math.max(0, math.floor(b.y))
            local x1, y1 = math.min(W, math.ceil(b.x + b.w)), math.min(H, math.ceil(b.y + b.h))
            if x1 <= x0 or y1 <= y0 then x0, y0, x1, y1 = 0, 0, W, H end
            image_mod.save(image_mod.crop(img, y0, x0, y1 - y0, x1 - x0), outdir .. "/" .. basename(im.path), {quality = 95})
            done = done + 1
            if bar then bar:update(nil, done) end
          end
        else
          local files = {}
          for _, im in ipairs(g) do files[#files + 1] = sh(root .. "/images/" .. im.path) end
          local args = table.concat(files, " ")
          local okc = false
          if used_mode == "link" then
            okc = os.execute(("cp -l --remove-destination -- %s %s 2>/dev/null"):format(args, sh(outdir .. "/"))) == true
            if not okc then used_mode = "copy" end -- another filesystem: copies from now on
          end
          if not okc then
            if not os.execute(("cp --remove-destination -- %s %s"):format(args, sh(outdir .. "/"))) then
              fail(fn, "copying the images of %s failed", key)
            end
          end
          done = done + #g
          if bar then bar:update(nil, done) end
        end
      end
    end
    if bar then bar:finish() end
    write_atomic(dst .. "/train.txt", table.concat(lists.train, "\n") .. (#lists.train > 0 and "\n" or ""))
    write_atomic(dst .. "/test.txt", table.concat(lists.test, "\n") .. (#lists.test > 0 and "\n" or ""))
    local json = require "aviary.json"
    local cls = {}
    for k, c in ipairs(info.classes) do
      cls[k] = {id = c.id, original_id = c.original_id, name = c.name, dir = c.dir, train = c.train, test = c.test,
                parent_id = c.parent_id}
    end
    write_atomic(dst .. "/classes.json", json.encode({
      format = info.format, source = src, mode = used_mode, crop = opts.crop or json.null,
      counts = {train = info.counts.train, test = info.counts.test}, classes = cls}, {indent = true}) .. "\n")
    return {train = info.counts.train, test = info.counts.test, classes = #info.classes, mode = used_mode,
            dst = dst, format = info.format}
  end)
  if tmpdir then os.execute("rm -rf " .. sh(tmpdir)) end
  if not ok then error(res, 0) end
  return res
end

return M
