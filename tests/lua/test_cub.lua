-- Drawing (aviary.draw / av._draw), the synthetic CUB generator, and the
-- CUB-200-2011 / NABirds reader and preparer (aviary.data.cub).
local av = require "aviary"
local draw = require "aviary.draw"
local synth = require "aviary.data.synthetic"
local cub = require "aviary.data.cub"

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function read_all(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function write_all(p, s)
  local f = assert(io.open(p, "wb"))
  f:write(s)
  f:close()
end
local function lines_of(p)
  local t = {}
  for l in io.lines(p) do t[#t + 1] = l end
  return t
end
local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end
local function count_files(dir, pattern)
  local p = io.popen("find " .. sh(dir) .. " -type f -name " .. sh(pattern or "*.jpg") .. " | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

-- sum of channel k of a uint8 C x H x W tensor, in units of 255
local function coverage(t, k)
  return t:select(1, k or 1):double():sum():item() / 255
end

local base = av_test.tmpdir() .. "/cub." .. math.random(1, 1e9)
os.execute("mkdir -p " .. sh(base))

describe("draw", function()
  it("fills an ellipse with its area, rotated", function()
    local c = draw.canvas(64, 64)
    c:ellipse(32.3, 31.7, 20, 10, 0.7, {255, 255, 255})
    assert.near(coverage(c:tensor()), math.pi * 200, math.pi * 200 * 0.01)
    -- the centre is covered, a point outside the rotated ellipse is not
    local t = c:tensor()
    assert.equal(t[1][32][33], 255)
    assert.equal(t[1][5][60], 0)
  end)

  it("covers fractional rectangles exactly", function()
    local c = draw.canvas(20, 20)
    c:rect(3.5, 2.25, 5, 3, 255)
    assert.near(coverage(c:tensor()), 15, 0.05)
  end)

  it("outlines a box on exactly the border pixels", function()
    local c = draw.canvas(20, 16)
    c:box(2, 3, 10, 6, {255, 0, 0}, 2)
    local t = c:tensor()
    assert.equal(coverage(t, 1), 10 * 6 - 6 * 2)
    assert.equal(coverage(t, 2), 0)
    -- 0-based pixel (x, y) is t[1][y + 1][x + 1]
    local function px(x, y) return t[1][y + 1][x + 1] end
    assert.equal(px(2, 3), 255); assert.equal(px(11, 8), 255); assert.equal(px(3, 4), 255)
    assert.equal(px(4, 5), 0); assert.equal(px(9, 6), 0)   -- inside
    assert.equal(px(1, 3), 0); assert.equal(px(12, 8), 0); assert.equal(px(2, 9), 0) -- outside
  end)

  it("fills polygons by the nonzero and even-odd rules", function()
    local outer, inner = {2, 2, 18, 2, 18, 18, 2, 18}, {6, 6, 14, 6, 14, 14, 6, 14}
    local a = draw.canvas(20, 20):polygon({outer, inner}, 255, 1, "nonzero")
    local b = draw.canvas(20, 20):polygon({outer, inner}, 255, 1, "evenodd")
    assert.near(coverage(a:tensor()), 256, 0.01)
    assert.near(coverage(b:tensor()), 256 - 64, 0.01)
    -- a triangle: half the square
    local tri = draw.canvas(20, 20):polygon({0, 0, 16, 0, 0, 16}, 255)
    assert.near(coverage(tri:tensor()), 128, 1.5)
  end)

  it("draws thick lines as one shape (no double blending at joints)", function()
    local c = draw.canvas(40, 40)
    c:line({5, 5, 35, 35, 35, 5, 5, 35}, 4, 200, 0.5)
    local t = c:tensor()
    assert.truthy(t:max():item() <= 101, "max " .. t:max():item())
    assert.truthy(coverage(t) > 30)
  end)

  it("draws gradients, shading, noise and blur", function()
    local c = draw.canvas(10, 4):gradient(0, 0, 10, 0, {0, 0, 0}, {200, 100, 0})
    local t = c:tensor()
    assert.truthy(t[1][1][1] < 20 and t[1][1][10] > 180)
    assert.equal(t[3]:max():item(), 0)
    local n1 = draw.canvas(16, 16, {color = 128}):noise(20, 7):tensor()
    local n2 = draw.canvas(16, 16, {color = 128}):noise(20, 7):tensor()
    local n3 = draw.canvas(16, 16, {color = 128}):noise(20, 8):tensor()
    assert.equal((n1:int() - n2:int()):abs():max():item(), 0)
    assert.truthy((n1:int() - n3:int()):abs():max():item() > 0)
    local b = draw.canvas(32, 32):rect(8, 8, 16, 16, 255):blur(2)
    local bt = b:tensor()
    assert.near(coverage(bt), 256, 256 * 0.03)
    assert.truthy(bt[1][8][16] > 0 and bt[1][8][16] < 255)
    local s = draw.canvas(4, 4, {color = 100}):shade(0, 0, 4, 0, 0.5, 2):tensor()
    assert.truthy(s[1][1][1] < 100 and s[1][1][4] > 100)
  end)

  it("renders text inside its box", function()
    local w, h = draw.text_size("Ab", 2)
    assert.equal(w, 24); assert.equal(h, 16)
    local img = av.zeros({3, 30, 40}, {dtype = "uint8"})
    local _, tw, th = draw.text(img, 5, 6, "Ab", {color = "white", scale = 2})
    assert.equal(tw, 24); assert.equal(th, 16)
    local lit = coverage(img)
    assert.truthy(lit > 20, "text lit " .. lit .. " pixels")
    assert.near(coverage(img:narrow(2, 7, 16):narrow(3, 6, 24)), lit, 1e-9)
    -- every printable character has a glyph (space aside)
    for ch = 33, 126 do
      local c = draw.canvas(6, 8):text(0, 0, string.char(ch), 255)
      assert.truthy(coverage(c:tensor()) > 0, "glyph " .. string.char(ch))
    end
  end)

  it("draws boxes on image tensors in place", function()
    local img = av.zeros({3, 10, 12}, {dtype = "uint8"})
    local out = draw.box(img, 1, 2, 5, 4, {color = {0, 255, 0}, width = 1})
    assert.equal(out, img)
    assert.equal(coverage(img, 2), 5 * 4 - 3 * 2)
    assert.equal(coverage(img, 1), 0)
    draw.draw_box(img, {x = 0, y = 0, w = 12, h = 10}, {color = {255, 0, 0}, width = 1})
    assert.equal(coverage(img, 1), 12 * 10 - 10 * 8)
  end)

  it("tiles images with make_grid", function()
    local imgs = {}
    for i = 1, 5 do imgs[i] = av.full({3, 10, 12}, i * 40, {dtype = "uint8"}) end
    local g = draw.make_grid(imgs, {nrow = 3, padding = 2})
    assert.same(g:size(), {3, 2 * (10 + 2) + 2, 3 * (12 + 2) + 2})
    assert.equal(g:type(), "aviary.ByteTensor")
    assert.equal(g[1][3][3], 40)
    assert.equal(g[1][15][3], 160)
    assert.equal(g[1][15][17], 200)
    local gc = draw.make_grid(imgs, {nrow = 3, padding = 2, captions = {"a", "b", "c", "d", "e"},
      caption_colors = {"green", "red", "green", "red", "green"}})
    assert.same(gc:size(), {3, 2 * (10 + 10 + 2) + 2, 3 * (12 + 2) + 2})
    -- a batch tensor works too
    local batch = av.zeros({4, 1, 8, 8}, {dtype = "uint8"})
    assert.same(draw.make_grid(batch, {nrow = 2, padding = 0}):size(), {1, 16, 16})
  end)

  it("rejects bad arguments with clear messages", function()
    local c = draw.canvas(8, 8)
    assert.error_matches(function() c:ellipse(1, 1, 2, 2, 0, {300, 0, 0}) end, "0..255")
    assert.error_matches(function() c:rect(0, 0, 1, 1, 255, 2) end, "alpha")
    assert.error_matches(function() c:polygon({1, 2, 3}, 255) end, "odd number")
    assert.error_matches(function() c:polygon({0, 0, 1, 0, 1, 1}, 255, 1, "winding") end, "nonzero")
    assert.error_matches(function() draw.canvas(0, 5) end, "size")
    assert.error_matches(function() draw.make_grid({}) end, "non-empty")
    assert.error_matches(function() draw.box(av.zeros(2, 2), 0, 0, 1, 1, {colour = "red"}) end, "unknown option")
    c:close()
    assert.error_matches(function() c:fill(0) end, "closed")
  end)
end)

-- one tiny synthetic set shared by the tests below
local SYN = base .. "/syn"
local ROOT = SYN .. "/CUB_200_2011"
local gen_opts = {classes = 6, per_class = 6, size = "64x48", seed = 3, out = SYN, tgz = true, progress = false, jobs = 1}

describe("synthetic CUB", function()
  it("writes the official files and images", function()
    local r = synth.generate(gen_opts)
    assert.equal(r.images, 36)
    assert.equal(r.train + r.test, 36)
    for _, f in ipairs(cub.files) do assert.truthy(exists(ROOT .. "/" .. f), f) end
    assert.truthy(exists(SYN .. "/CUB_200_2011.tgz"))
    assert.equal(count_files(ROOT .. "/images"), 36)
    local cls = lines_of(ROOT .. "/classes.txt")
    assert.equal(#cls, 6)
    for i, l in ipairs(cls) do
      assert.truthy(l:match(("^%d %03d%%.Synthetic_[%%w_]+$"):format(i, i)), l)
    end
    local im = lines_of(ROOT .. "/images.txt")[8]
    local dir, bare, n, id = im:match("^8 (%d%d%d%.Synthetic_[%w_]+)/(Synthetic_[%w_]+)_(%d%d%d%d)_(%d+)%.jpg$")
    assert.truthy(dir, im)
    assert.equal(dir, "002." .. bare)
    assert.equal(n, "0002"); assert.equal(id, "8")
  end)

  it("is the same bytes for the same seed, whatever the number of workers", function()
    local other = base .. "/syn_again"
    synth.generate({classes = 6, per_class = 6, size = "64x48", seed = 3, out = other, progress = false, jobs = 2})
    for _, f in ipairs(cub.files) do
      assert.equal(read_all(other .. "/CUB_200_2011/" .. f), read_all(ROOT .. "/" .. f), f)
    end
    for _, l in ipairs(lines_of(ROOT .. "/images.txt")) do
      local p = l:match("^%d+ (.*)$")
      assert.truthy(read_all(other .. "/CUB_200_2011/images/" .. p) == read_all(ROOT .. "/images/" .. p), p)
    end
    -- another seed draws other images
    local third = base .. "/syn_seed4"
    synth.generate({classes = 1, per_class = 1, size = "64x48", seed = 4, out = third, progress = false, jobs = 1})
    local p = lines_of(third .. "/CUB_200_2011/images.txt")[1]:match("^1 (.*)$")
    local q = lines_of(ROOT .. "/images.txt")[1]:match("^1 (.*)$")
    assert.truthy(read_all(third .. "/CUB_200_2011/images/" .. p) ~= read_all(ROOT .. "/images/" .. q))
  end)

  it("keeps boxes inside images of varying sizes, and writes grayscale images", function()
    local image = require "aviary.image"
    local info = cub.read(ROOT)
    local sizes = {}
    for _, im in ipairs(info.images) do
      local w, h = image.probe(ROOT .. "/images/" .. im.path)
      sizes[w .. "x" .. h] = true
      local b = im.bbox
      assert.truthy(b.x >= 0 and b.y >= 0 and b.w > 4 and b.h > 4, im.path)
      assert.truthy(b.x + b.w <= w + 0.05 and b.y + b.h <= h + 0.05, im.path)
    end
    local nsizes = 0
    for _ in pairs(sizes) do nsizes = nsizes + 1 end
    assert.truthy(nsizes > 3, "image sizes vary")
    local g = base .. "/syn_gray"
    synth.generate({classes = 1, per_class = 2, size = "40x30", out = g, grayscale_fraction = 1, progress = false, jobs = 1})
    for _, l in ipairs(lines_of(g .. "/CUB_200_2011/images.txt")) do
      local _, _, c = image.probe(g .. "/CUB_200_2011/images/" .. l:match("^%d+ (.*)$"))
      assert.equal(c, 1)
    end
  end)

  it("names species uniquely and shares colours between classes", function()
    local cls = synth.classes(200, 1)
    local names, bodies = {}, {}
    for _, c in ipairs(cls) do
      assert.falsy(names[c.name], c.name)
      names[c.name] = true
      bodies[c.spec.body] = (bodies[c.spec.body] or 0) + 1
    end
    for i, n in pairs(bodies) do assert.truthy(n >= 2, synth.palette[i][1] .. " is used by one class only") end
  end)

  it("rejects bad options", function()
    assert.error_matches(function() synth.generate({clases = 3}) end, "unknown option \"clases\"")
    assert.error_matches(function() synth.generate({size = "big", out = base .. "/x"}) end, "WxH")
  end)
end)

describe("cub.read", function()
  it("reads classes, images, splits and boxes", function()
    local info = cub.read(ROOT)
    assert.equal(info.format, "cub")
    assert.equal(#info.classes, 6)
    assert.equal(#info.images, 36)
    assert.equal(info.counts.train + info.counts.test, 36)
    local ntrain = 0
    for _, l in ipairs(lines_of(ROOT .. "/train_test_split.txt")) do
      if l:match(" 1$") then ntrain = ntrain + 1 end
    end
    assert.equal(info.counts.train, ntrain)
    local boxes = lines_of(ROOT .. "/bounding_boxes.txt")
    for i, im in ipairs(info.images) do
      assert.equal(im.id, i)
      assert.equal(im.class_id, (i - 1) // 6 + 1)
      assert.equal(im.class_name, info.classes[im.class_id].name)
      assert.equal(type(im.is_train), "boolean")
      local x, y, w, h = boxes[i]:match("^%d+ (%S+) (%S+) (%S+) (%S+)$")
      assert.same(im.bbox, {x = tonumber(x), y = tonumber(y), w = tonumber(w), h = tonumber(h)})
    end
    for k, c in ipairs(info.classes) do
      assert.equal(c.id, k); assert.equal(c.original_id, k)
      assert.equal(c.train + c.test, 6)
    end
  end)

  -- a corrupted copy of the tree (hard links: only the edited file is rewritten)
  local function broken(name, edit)
    local d = base .. "/bad_" .. name
    os.execute(("rm -rf %s && cp -al %s %s"):format(sh(d), sh(ROOT), sh(d)))
    edit(d)
    return d
  end
  local function edit_line(path, n, text)
    local ls = lines_of(path)
    if text then ls[n] = text else table.remove(ls, n) end
    os.remove(path)
    write_all(path, table.concat(ls, "\n") .. "\n")
  end

  it("names the file and line of bad input", function()
    local d = broken("missing", function(d) os.remove(d .. "/bounding_boxes.txt") end)
    assert.error_matches(function() cub.read(d) end, "bounding_boxes.txt is missing")
    d = broken("class", function(d) edit_line(d .. "/image_class_labels.txt", 3, "3 99") end)
    assert.error_matches(function() cub.read(d) end, "image_class_labels.txt line 3: unknown class id 99")
    d = broken("imageid", function(d) edit_line(d .. "/image_class_labels.txt", 17, "99999 2") end)
    assert.error_matches(function() cub.read(d) end, "image_class_labels.txt line 17: unknown image id 99999")
    d = broken("count", function(d) edit_line(d .. "/train_test_split.txt", 36) end)
    assert.error_matches(function() cub.read(d) end, "train_test_split.txt has 35 lines but images.txt has 36")
    d = broken("flag", function(d) edit_line(d .. "/train_test_split.txt", 4, "4 2") end)
    assert.error_matches(function() cub.read(d) end, "train_test_split.txt line 4: the flag must be 1 (train) or 0 (test)")
    d = broken("box", function(d) edit_line(d .. "/bounding_boxes.txt", 5, "5 1.0 2.0 x 4.0") end)
    assert.error_matches(function() cub.read(d) end, "bounding_boxes.txt line 5: \"x\" is not a number")
    d = broken("dup", function(d) edit_line(d .. "/images.txt", 2, lines_of(d .. "/images.txt")[1]) end)
    assert.error_matches(function() cub.read(d) end, "images.txt line 2: duplicate image id 1")
    local victim
    d = broken("file", function(d)
      victim = lines_of(d .. "/images.txt")[10]:match("^%d+ (.*)$")
      os.remove(d .. "/images/" .. victim)
    end)
    assert.error_matches(function() cub.read(d) end, "images.txt line 10: image file images/" .. victim .. " does not exist")
    assert.equal(#cub.read(d, {check_images = false}).images, 36)
    assert.error_matches(function() cub.read(base .. "/nowhere") end, "is not a folder")
    assert.error_matches(function() cub.read(ROOT, {format = "coco"}) end, "format must be")
  end)

  it("reads NABirds' format: UUID ids, sparse class ids, hierarchy", function()
    local d = base .. "/nabirds"
    os.execute(("rm -rf %s && mkdir -p %s && cp -al %s %s"):format(sh(d), sh(d), sh(ROOT .. "/images"), sh(d .. "/images")))
    local uuid = function(id) return ("%08x-0000-4000-8000-%012x"):format(id * 7919, id) end
    local function rewrite(name, f)
      local out = {}
      for _, l in ipairs(lines_of(ROOT .. "/" .. name)) do out[#out + 1] = f(l) end
      write_all(d .. "/" .. name, table.concat(out, "\n") .. "\n")
    end
    local sparse = function(c) return 100 + 7 * c end
    rewrite("images.txt", function(l) local i, p = l:match("^(%d+) (.*)$"); return uuid(tonumber(i)) .. " " .. p end)
    rewrite("train_test_split.txt", function(l) local i, v = l:match("^(%d+) (.*)$"); return uuid(tonumber(i)) .. " " .. v end)
    rewrite("bounding_boxes.txt", function(l) local i, v = l:match("^(%d+) (.*)$"); return uuid(tonumber(i)) .. " " .. v end)
    rewrite("image_class_labels.txt", function(l)
      local i, c = l:match("^(%d+) (%d+)$")
      return uuid(tonumber(i)) .. " " .. sparse(tonumber(c))
    end)
    local cls, hier = {"0 Birds", "1 Perching Birds"}, {"1 0"}
    for c = 6, 1, -1 do -- out of order, names with spaces
      cls[#cls + 1] = ("%d Synthetic Bird number %d"):format(sparse(c), c)
      hier[#hier + 1] = ("%d 1"):format(sparse(c))
    end
    write_all(d .. "/classes.txt", table.concat(cls, "\n") .. "\n")
    write_all(d .. "/hierarchy.txt", table.concat(hier, "\n") .. "\n")
    local info = cub.read(d)
    assert.equal(info.format, "nabirds")
    assert.equal(#info.classes, 6)
    for k, c in ipairs(info.classes) do
      assert.equal(c.id, k)
      assert.equal(c.original_id, sparse(k))
      assert.equal(c.name, "Synthetic Bird number " .. k)
      assert.equal(c.parent_id, 1)
      assert.equal(c.dir, ("%04d.Synthetic_Bird_number_%d"):format(sparse(k), k))
    end
    assert.equal(info.images[8].id, uuid(8))
    assert.equal(info.images[8].class_id, 2)
    local ref = cub.read(ROOT)
    assert.same(info.counts, ref.counts)
    local r = cub.prepare(d, base .. "/prep_nab", {mode = "link", progress = false})
    assert.equal(r.classes, 6)
    assert.equal(count_files(base .. "/prep_nab/train/" .. info.classes[2].dir), info.classes[2].train)
    -- forcing CUB's format on it fails on the ids
    assert.error_matches(function() cub.read(d, {format = "cub"}) end, "class ids must be 1..8 in order")
  end)
end)

describe("cub.prepare", function()
  local ref
  local function check_layout(dst, r)
    ref = ref or cub.read(ROOT)
    assert.equal(r.train, ref.counts.train)
    assert.equal(r.test, ref.counts.test)
    assert.equal(count_files(dst .. "/train"), ref.counts.train)
    assert.equal(count_files(dst .. "/test"), ref.counts.test)
    for _, im in ipairs(ref.images) do
      local p = ("%s/%s/%s"):format(dst, im.is_train and "train" or "test", im.path)
      assert.truthy(exists(p), p)
    end
    assert.equal(#lines_of(dst .. "/train.txt"), ref.counts.train)
    local meta = require("aviary.json").read(dst .. "/classes.json")
    assert.equal(#meta.classes, 6)
    assert.equal(meta.counts.train, ref.counts.train)
    assert.equal(meta.classes[3].name, ref.classes[3].name)
  end
  local function inode(p)
    local f = io.popen("stat -c %i " .. sh(p))
    local s = f:read("l")
    f:close()
    return s
  end

  it("links the images into train/ and test/ class folders", function()
    local dst = base .. "/prep_link"
    local r = cub.prepare(ROOT, dst, {mode = "link", progress = false})
    assert.equal(r.mode, "link")
    check_layout(dst, r)
    local im = ref.images[1]
    assert.equal(inode(dst .. "/" .. (im.is_train and "train" or "test") .. "/" .. im.path), inode(ROOT .. "/images/" .. im.path))
    -- running it again over the same folder is fine
    check_layout(dst, cub.prepare(ROOT, dst, {mode = "link", progress = false}))
  end)

  it("copies the images", function()
    local dst = base .. "/prep_copy"
    local r = cub.prepare(ROOT, dst, {mode = "copy", progress = false})
    assert.equal(r.mode, "copy")
    check_layout(dst, r)
    local im = ref.images[2]
    local p = dst .. "/" .. (im.is_train and "train" or "test") .. "/" .. im.path
    assert.truthy(inode(p) ~= inode(ROOT .. "/images/" .. im.path))
    assert.equal(read_all(p), read_all(ROOT .. "/images/" .. im.path))
  end)

  it("writes only the index files", function()
    local dst = base .. "/prep_index"
    local r = cub.prepare(ROOT, dst, {mode = "index", progress = false})
    ref = ref or cub.read(ROOT)
    assert.equal(r.train, ref.counts.train)
    assert.falsy(exists(dst .. "/train"))
    local tr = lines_of(dst .. "/train.txt")
    assert.equal(#tr, ref.counts.train)
    assert.equal(#lines_of(dst .. "/test.txt"), ref.counts.test)
    for _, l in ipairs(tr) do
      local p, label = l:match("^(.*) (%d+)$")
      assert.truthy(exists(p), p)
      assert.truthy(tonumber(label) >= 1 and tonumber(label) <= 6)
    end
  end)

  it("extracts the .tgz archive and cleans up", function()
    local dst = base .. "/out/prep_tgz"
    local r = cub.prepare(SYN .. "/CUB_200_2011.tgz", dst, {mode = "link", progress = false})
    check_layout(dst, r)
    local p = io.popen("ls -a " .. sh(base .. "/out"))
    local listing = p:read("a")
    p:close()
    assert.falsy(listing:find(".cub_extract", 1, true), listing)
    -- index mode keeps the extracted folder under dst
    local di = base .. "/prep_tgz_index"
    cub.prepare(SYN .. "/CUB_200_2011.tgz", di, {mode = "index", progress = false})
    local first = lines_of(di .. "/train.txt")[1]:match("^(.*) %d+$")
    assert.truthy(first:match("^CUB_200_2011/images/"), first)
    assert.truthy(exists(di .. "/" .. first))
    assert.error_matches(function() cub.prepare(base .. "/nothing.tgz", base .. "/x") end, "does not exist")
  end)

  it("crops to the bounding boxes", function()
    local ok, image = pcall(require, "aviary.image")
    if not ok then skip("aviary.image is not available") end
    local dst = base .. "/prep_crop"
    local r = cub.prepare(ROOT, dst, {mode = "copy", crop = "bbox", progress = false})
    ref = ref or cub.read(ROOT)
    assert.equal(r.mode, "crop")
    for i = 1, 36, 7 do
      local im = ref.images[i]
      local w, h = image.probe(dst .. "/" .. (im.is_train and "train" or "test") .. "/" .. im.path)
      local b = im.bbox
      assert.truthy(math.abs(w - b.w) <= 2 and math.abs(h - b.h) <= 2, ("%dx%d vs %gx%g"):format(w, h, b.w, b.h))
    end
  end)

  it("rejects bad options", function()
    assert.error_matches(function() cub.prepare(ROOT, base .. "/x", {mode = "move"}) end, "mode must be")
    assert.error_matches(function() cub.prepare(ROOT, base .. "/x", {crop = "square"}) end, "crop must be")
    assert.error_matches(function() cub.prepare(ROOT, base .. "/x", {mdoe = "link"}) end, "unknown option")
  end)
end)

describe("progress", function()
  it("reports rate and ETA, tty or not", function()
    local progress = require "aviary.progress"
    local out = {}
    local stream = {write = function(_, ...) for _, s in ipairs({...}) do out[#out + 1] = s end end, flush = function() end}
    local bar = progress.bar(10, {label = "x", stream = stream, tty = false})
    for _ = 1, 10 do bar:update(1) end
    bar:finish()
    local text = table.concat(out)
    assert.truthy(text:find("10/10 100.0%", 1, true), text)
    assert.truthy(text:find("eta", 1, true) and text:find("it/s", 1, true), text)
    local _, nlines = text:gsub("\n", "")
    assert.equal(nlines, 10) -- every 10%
    out = {}
    bar = progress.bar(3, {stream = stream, tty = true})
    bar:update(3)
    bar:finish()
    assert.truthy(table.concat(out):find("\r", 1, true))
    assert.equal(progress.format_time(3725), "1:02:05")
  end)
end)

os.execute("rm -rf " .. sh(base))
