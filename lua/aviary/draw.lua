--- aviary.draw: drawing on images, and figures made of images.
--
-- Two ways in:
--
-- * A **Canvas** (C userdata over an interleaved H x W x C uint8 image, 1, 3 or
--   4 channels; runtime/image/draw.c), for drawing many shapes cheaply:
--     draw.canvas(w, h [, {channels = 3, color = fill}])   draw.from_tensor(t)   draw.load(path)
--   Methods (each returns the canvas, so calls chain):
--     c:fill(color)                          c:rect(x, y, w, h, color [, alpha])
--     c:box(x, y, w, h, color [, width = 1 [, alpha]])   -- outline of pixels x..x+w-1, inwards
--     c:ellipse(cx, cy, rx, ry, angle, color [, alpha])  -- rotated, antialiased
--     c:polygon(points, color [, alpha [, "nonzero" | "evenodd"]])
--         points {x1, y1, x2, y2, ...} or a list of such contours (holes by the rule)
--     c:line({x1, y1, x2, y2, ...}, width, color [, alpha])   -- round joins and caps
--     c:gradient(x0, y0, x1, y1, color0, color1 [, alpha])    -- linear, over the whole canvas
--     c:shade(x0, y0, x1, y1, gain0, gain1 [, {tr, tg, tb}])  -- linear ramp of gains (lighting), tint factors
--     c:noise(amplitude, seed [, mono])       -- uniform +-amplitude, deterministic in seed
--     c:blur(sigma [, x, y, w, h])            -- Gaussian-like (three box passes)
--     c:grayscale()  c:to_gray() -> 1-channel canvas  c:paste(canvas or tensor, x, y [, alpha])
--     c:text(x, y, str, color [, scale = 1 [, alpha]]) -> c, w, h   -- built-in 5x7 font
--     c:tensor() -> uint8 C x H x W   c:write(t) (into an existing uint8 tensor)   c:clone()
--     c:size() -> w, h, channels      c:save(path [, quality = 90])   c:close()
--   draw.text_size(str [, scale]) -> w, h: a glyph cell is 6 x 8 pixels times scale.
-- * **Functions on image tensors** (uint8 C x H x W, as aviary.image gives):
--   `draw.box`, `draw.draw_box`, `draw.text`, `draw.make_grid`. They copy the
--   tensor into a canvas, draw, and write back in place (box, text) or return a
--   new tensor (make_grid).
--
-- Coordinates are 0-based pixel geometry from the top-left corner, x right
-- and y down, as in PIL: draw.box(img, 0, 0, 10, 5) outlines pixel columns
-- 0..9 and rows 0..4 (tensor elements img[c][1..5][1..10]); the centre of
-- pixel (i, j) is (i + 0.5, j + 0.5). Angles are radians, clockwise on screen.
-- Colours are {r, g, b} (0..255), a gray level, or (in this module's
-- functions) a name from draw.colors; alpha is 0..1.
local core = require "aviary.core"
local D = core._draw

local M = {}
M.Canvas = D.Canvas

M.colors = {
  black = {0, 0, 0}, white = {255, 255, 255}, red = {220, 30, 30}, green = {30, 170, 60},
  blue = {40, 80, 220}, yellow = {240, 210, 40}, gray = {128, 128, 128}, orange = {245, 140, 30},
}

local function color(c, fn)
  if c == nil then return nil end
  if type(c) == "string" then
    local v = M.colors[c]
    if not v then error(("aviary.draw.%s: unknown colour name %q (known: %s)"):format(fn, c,
      table.concat((function() local k = {} for n in pairs(M.colors) do k[#k + 1] = n end table.sort(k) return k end)(), ", ")), 3) end
    return v
  end
  return c
end
M.color = function(c) return color(c, "color") end

local function check_opts(opts, allowed, fn)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("aviary.draw.%s: options must be a table, got %s"):format(fn, type(opts)), 3) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      error(("aviary.draw.%s: unknown option %q (valid: %s)"):format(fn, tostring(k), table.concat(names, ", ")), 3)
    end
  end
  return opts
end

--- a new canvas w x h; opts: channels (3), color (fill, default black)
function M.canvas(w, h, opts)
  opts = check_opts(opts, {channels = true, color = true}, "canvas")
  return D.canvas(w, h, opts.channels or 3, color(opts.color, "canvas"))
end
M.from_tensor = D.from_tensor
M.load = D.load
M.text_size = D.text_size

--- draw.box(img, x, y, w, h, {color = "red", width = 2, alpha = 1}) -> img (drawn in place)
function M.box(img, x, y, w, h, opts)
  opts = check_opts(opts, {color = true, width = true, alpha = true}, "box")
  local c = D.from_tensor(img)
  c:box(math.floor(x + 0.5), math.floor(y + 0.5), math.floor(w + 0.5), math.floor(h + 0.5),
        color(opts.color or "red", "box"), opts.width or 2, opts.alpha or 1)
  c:write(img)
  c:close()
  return img
end

--- draw.draw_box(img, box, opts): draw.box with box = {x=, y=, w=, h=} (as aviary.data.cub's bbox) or {x, y, w, h}
function M.draw_box(img, box, opts)
  if type(box) ~= "table" then error("aviary.draw.draw_box: box must be {x=, y=, w=, h=} or {x, y, w, h}", 2) end
  local x, y, w, h = box.x or box[1], box.y or box[2], box.w or box[3], box.h or box[4]
  return M.box(img, x, y, w, h, opts)
end

--- draw.text(img, x, y, str, {color = "white", scale = 1, background = nil, alpha = 1}) -> img, w, h
function M.text(img, x, y, str, opts)
  opts = check_opts(opts, {color = true, scale = true, alpha = true, background = true}, "text")
  local scale = opts.scale or 1
  local c = D.from_tensor(img)
  local tw, th = D.text_size(tostring(str), scale)
  if opts.background then c:rect(x - scale, y - scale, tw + scale, th + scale, color(opts.background, "text")) end
  c:text(math.floor(x), math.floor(y), tostring(str), color(opts.color or "white", "text"), scale, opts.alpha or 1)
  c:write(img)
  c:close()
  return img, tw, th
end

--- draw.make_grid(images, {nrow = 8, padding = 2, pad_value = 0, captions = {...},
--    caption_colors = {...}, caption_scale = 1, caption_color = "white"}) -> uint8 C x H x W
-- images: a list of image tensors (uint8 C x H x W, or float in [0, 1]) or one
-- N x C x H x W tensor. Cells are the size of the largest image; nrow images per
-- row (as torchvision.utils.make_grid). Captions go in a strip under each image.
function M.make_grid(images, opts)
  opts = check_opts(opts, {nrow = true, padding = true, pad_value = true, captions = true,
    caption_colors = true, caption_scale = true, caption_color = true}, "make_grid")
  local list = images
  if core.is_tensor(images) then
    list = {}
    for i = 1, images:size(1) do list[i] = images:select(1, i) end
  end
  if type(list) ~= "table" or #list == 0 then error("aviary.draw.make_grid: expected a non-empty list of images", 2) end
  local nrow, pad = opts.nrow or 8, opts.padding or 2
  local cw, ch, chans = 0, 0, 1
  for i, t in ipairs(list) do
    if not core.is_tensor(t) then error(("aviary.draw.make_grid: image %d is a %s, not a tensor"):format(i, type(t)), 2) end
    local s = t:size()
    local c, h, w = #s == 3 and s[1] or 1, s[#s - 1], s[#s]
    cw, ch, chans = math.max(cw, w), math.max(ch, h), math.max(chans, c == 4 and 3 or c)
  end
  if opts.caption_colors or opts.captions then chans = 3 end
  local scale = opts.caption_scale or 1
  local cap_h = opts.captions and (8 * scale + 2) or 0
  local ncol = math.min(nrow, #list)
  local rows = (#list + ncol - 1) // ncol
  local W = ncol * (cw + pad) + pad
  local H = rows * (ch + cap_h + pad) + pad
  local cv = D.canvas(W, H, chans, color(opts.pad_value or 0, "make_grid"))
  for i, t in ipairs(list) do
    local col, row = (i - 1) % ncol, (i - 1) // ncol
    local x, y = pad + col * (cw + pad), pad + row * (ch + cap_h + pad)
    cv:paste(t, x, y)
    local cap = opts.captions and opts.captions[i]
    if cap then
      cap = tostring(cap)
      local maxc = math.max(1, cw // (6 * scale))
      if #cap > maxc then cap = cap:sub(1, maxc) end
      local c = color((opts.caption_colors and opts.caption_colors[i]) or opts.caption_color or "white", "make_grid")
      cv:text(x, y + ch + 1, cap, c, scale)
    end
  end
  local out = cv:tensor()
  cv:close()
  return out
end

return M
